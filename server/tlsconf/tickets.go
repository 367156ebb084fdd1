package tlsconf

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// Session tickets let a client that comes back resume its session without
// a full handshake. A ticket is sealed with a session ticket key: a client
// resumes only where the key that sealed its ticket is known. So that a
// client resumes across an upgrade too, the keys belong to the lineage, not
// to one process: the first generation makes them (Ring), each one hands
// them to its successor in the handoff (over the 0600, peer-checked
// socket: they are secret, and are never logged nor shown), and the
// newest encrypts while older ones still decrypt. Keys configured in
// session_ticket_keys files are used instead, and are the same for every
// process that reads them.

// Rotation of generated keys, as Go's crypto/tls does it on its own: a new
// key encrypts every TicketKeyRotation, and a key decrypts for
// TicketKeyLifetime after it was made (so a ticket is good for at most that
// long, and forward secrecy is bounded by it).
const (
	TicketKeyRotation = 24 * time.Hour
	TicketKeyLifetime = 7 * 24 * time.Hour
)

// TicketKey is one generated session ticket key and when it was made. It
// never prints its key.
type TicketKey struct {
	Key     [config.SessionTicketKeySize]byte
	Created time.Time
}

func (k TicketKey) String() string {
	return "TicketKey(created " + k.Created.UTC().Format(time.RFC3339) + ", redacted)"
}
func (k TicketKey) GoString() string              { return k.String() }
func (k TicketKey) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, k.String()) }

// Ring is the lineage's generated session ticket keys, newest first.
type Ring struct {
	now  func() time.Time
	rand io.Reader

	mu      sync.Mutex
	keys    []TicketKey
	version atomic.Uint64 // grows at every change of keys
	next    atomic.Int64  // UnixNano of the next rotation
}

// NewRing returns the ring of a process: the keys it inherited, or new
// ones. Inherited keys that are not sound (too many, a zero time), or past
// their lifetime, are dropped; the error says why when they were not
// taken (the ring is usable either way: it has fresh keys).
func NewRing(inherited []TicketKey, now func() time.Time, random io.Reader) (*Ring, error) {
	r := &Ring{now: now, rand: random}
	var err error
	t := now()
	switch {
	case len(inherited) > config.MaxSessionTicketKeys:
		err = fmt.Errorf("tls: %d session ticket keys inherited, at most %d: none taken", len(inherited), config.MaxSessionTicketKeys)
	default:
		for _, k := range inherited {
			if k.Created.IsZero() {
				err = fmt.Errorf("tls: an inherited session ticket key has no creation time: none taken")
				r.keys = nil
				break
			}
			if t.Sub(k.Created) < TicketKeyLifetime {
				r.keys = append(r.keys, k)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if gerr := r.rotateLocked(t); gerr != nil {
		return nil, gerr
	}
	return r, err
}

// Keys returns a copy of the keys, for a successor.
func (r *Ring) Keys() []TicketKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TicketKey(nil), r.keys...)
}

// current returns the keys and their version, rotating first if due.
func (r *Ring) current() ([]TicketKey, uint64) {
	if t := r.now(); t.UnixNano() >= r.next.Load() {
		r.mu.Lock()
		if t.UnixNano() >= r.next.Load() {
			_ = r.rotateLocked(t) // on a failed read of randomness the old keys serve on
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys, r.version.Load()
}

// rotateLocked makes a new key if the newest is older than the rotation
// period, and drops keys past their lifetime.
func (r *Ring) rotateLocked(t time.Time) error {
	if len(r.keys) == 0 || t.Sub(r.keys[0].Created) >= TicketKeyRotation {
		var k TicketKey
		if _, err := io.ReadFull(r.rand, k.Key[:]); err != nil {
			return fmt.Errorf("tls: make a session ticket key: %w", err)
		}
		k.Created = t
		r.keys = append([]TicketKey{k}, r.keys...)
	}
	kept := r.keys[:0]
	for i, k := range r.keys {
		if i == 0 || t.Sub(k.Created) < TicketKeyLifetime {
			kept = append(kept, k)
		}
	}
	r.keys = kept[:min(len(kept), config.MaxSessionTicketKeys)]
	r.version.Add(1)
	r.next.Store(r.keys[0].Created.Add(TicketKeyRotation).UnixNano())
	return nil
}

// ticketKeys keeps one TLS context's session ticket keys: its own
// (session_ticket_keys), or those of the ring, each derived for the
// context so that a ticket one context issued never resumes in another
// (whose client certificate rules may differ).
type ticketKeys struct {
	id      []byte // what the derivation binds the keys to
	own     [][config.SessionTicketKeySize]byte
	ring    *Ring
	version atomic.Uint64 // of the ring's keys last set
}

// apply sets cfg's keys if the ring's changed since the last call.
func (k *ticketKeys) apply(cfg *tls.Config) {
	if k.ring == nil {
		if k.version.CompareAndSwap(0, 1) {
			cfg.SetSessionTicketKeys(k.derive(k.own))
		}
		return
	}
	keys, v := k.ring.current()
	if k.version.Load() == v {
		return
	}
	raw := make([][config.SessionTicketKeySize]byte, len(keys))
	for i, key := range keys {
		raw[i] = key.Key
	}
	cfg.SetSessionTicketKeys(k.derive(raw))
	k.version.Store(v)
}

func (k *ticketKeys) derive(keys [][config.SessionTicketKeySize]byte) [][32]byte {
	out := make([][32]byte, len(keys))
	for i, key := range keys {
		m := hmac.New(sha256.New, key[:])
		m.Write([]byte("mosnlite session ticket key v1\x00"))
		m.Write(k.id)
		copy(out[i][:], m.Sum(nil))
	}
	return out
}

// contextID binds a listener's context i to what decides who it lets in:
// a ticket never carries a session past a change of the client
// certificate rules or CAs.
func contextID(listener string, i int, m *config.TLSMaterial) []byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(i))
	h.Write([]byte(listener))
	h.Write([]byte{0})
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(m.ClientAuth))
	h.Write(n[:])
	for _, ca := range m.CAs {
		sum := sha256.Sum256(ca.Raw)
		h.Write(sum[:])
	}
	return h.Sum(nil)
}
