package reconfig

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
)

// The handoff proof. A handoff runs over two connections: the new process
// asks on reconfig.sock, and the old one dials the new one's listen.sock to
// send its sockets. Each side must know that the process at the other end
// of listen.sock is the one it talked to on reconfig.sock. Comparing the
// peers' pids (SO_PEERCRED) cannot tell: across PID namespaces — two
// containers of a pod — the kernel reports every peer as pid 0. So the new
// process sends, with its listen signal on reconfig.sock, a random token
// that only the two ends of that connection ever see:
//
//	'L' | token (32 random bytes)          one write on reconfig.sock
//
// On listen.sock the new process shows the first half in its hello (the old
// one then knows that whoever accepted its dial is the one that asked), and
// the old process shows the second half in its manifest (the new one then
// knows that whoever dialed is the one it asked). Neither half reveals the
// other: a process that dials listen.sock in the old one's place learns the
// first half from the hello, never the second.
//
// Compatibility: a new process of an earlier version sends 'L' alone and no
// hello; an old process of an earlier version reads the 'L' alone, skips the
// hello (it is flagged optional) and sends a manifest without proof. Either
// side then falls back to comparing pids.

// tokenLen is the size of the token sent after 'L'.
const tokenLen = 32

// handoffToken is one handoff's secret.
type handoffToken [tokenLen]byte

// newToken draws a token from the system's random source.
func newToken() (handoffToken, error) {
	var t handoffToken
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("reconfig: handoff token: %w", err)
	}
	return t, nil
}

// newProof is what the new process shows in its hello.
func (t handoffToken) newProof() string { return hex.EncodeToString(t[:tokenLen/2]) }

// oldProof is what the old process shows in its manifest.
func (t handoffToken) oldProof() string { return hex.EncodeToString(t[tokenLen/2:]) }

// proofMatches compares a proof in constant time.
func proofMatches(got, want string) bool {
	return len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// listenSignal is 'L' and the token, written at once.
func (t handoffToken) listenSignal() []byte { return append([]byte{'L'}, t[:]...) }

// readListenSignal reads the new process's listen signal: 'L' and, from a
// process that sends one, the token. The token comes in the same write as
// the 'L', so one read returns both; a process of an earlier version sends
// the 'L' alone.
func readListenSignal(c *net.UnixConn) (tok handoffToken, has bool, err error) {
	buf := make([]byte, 1+tokenLen)
	n, err := c.Read(buf)
	if n == 0 {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return tok, false, err
	}
	if buf[0] != 'L' {
		return tok, false, wrongSignal(buf[0])
	}
	if n == 1 {
		return tok, false, nil
	}
	if n < len(buf) {
		if _, err := io.ReadFull(c, buf[n:]); err != nil {
			return tok, false, fmt.Errorf("a token cut short after %d of %d bytes: %w", n-1, tokenLen, err)
		}
	}
	copy(tok[:], buf[1:])
	return tok, true, nil
}

// wrongSignal is a listen signal other than 'L'.
type wrongSignal byte

func (w wrongSignal) Error() string { return fmt.Sprintf("answered %q, want 'L'", byte(w)) }

// helloMsg is the new process's first frame on listen.sock.
type helloMsg struct {
	PID   int    `json:"pid"`   // as the new process sees itself
	Proof string `json:"proof"` // newProof
}
