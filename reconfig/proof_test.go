package reconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/listener/ident"
)

// Two processes of one pod see each other as pid 0 (SO_PEERCRED across PID
// namespaces), so pids cannot show that the process on listen.sock is the
// one on reconfig.sock. In one process every pid is ours, so that a pid
// comparison here always passes: only the token can refuse these impostors.

// fakeNew asks the old process at dir for an upgrade the way a new process
// does, up to its listen signal, and returns the reconfig connection, the
// listen.sock listener (bound) and the token it sent (none with legacy).
func fakeNew(t *testing.T, dir string, legacy bool) (*net.UnixConn, *net.UnixListener, handoffToken) {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(dir, ReconfigSock))
	if err != nil {
		t.Fatal(err)
	}
	uc := c.(*net.UnixConn)
	t.Cleanup(func() { uc.Close() })
	uc.SetDeadline(time.Now().Add(testWait))
	var b [1]byte
	if _, err := io.ReadFull(uc, b[:]); err != nil || b[0] != 'U' {
		t.Fatalf("old process answered %q, %v", b[0], err)
	}
	ln, err := bindSocket(dir, ListenSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); os.Remove(filepath.Join(dir, ListenSock)) })
	tok, _ := newToken()
	sig := tok.listenSignal()
	if legacy {
		sig = []byte{'L'}
	}
	if _, err := uc.Write(sig); err != nil {
		t.Fatal(err)
	}
	return uc, ln, tok
}

func acceptHandoff(t *testing.T, ln *net.UnixListener) *net.UnixConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(testWait))
	hc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	hc.SetDeadline(time.Now().Add(testWait))
	return hc
}

func sendHello(t *testing.T, hc *net.UnixConn, pid int, proof string) {
	t.Helper()
	p, _ := json.Marshal(helloMsg{PID: pid, Proof: proof})
	if err := writeFrame(hc, typeHello, flagOptional, p, nil); err != nil {
		t.Fatal(err)
	}
}

// The old side: the process that accepted its dial on listen.sock must show
// the first half of the token the upgrading process sent on reconfig.sock.
func TestOldRefusesListenSockWithoutTheProof(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	_, ln, tok := fakeNew(t, dir, false)
	hc := acceptHandoff(t, ln)
	sendHello(t, hc, 4242, tok.oldProof()) // the wrong half
	err := old.waitFail(t)
	if err == nil || !strings.Contains(err.Error(), "handoff proof") {
		t.Fatalf("old side: %v, want a refusal naming the handoff proof", err)
	}
	// Nothing was sent: no manifest, no descriptor.
	if f, err := newDecoder(hc).Next(); err == nil {
		f.CloseFDs()
		t.Fatalf("the old process sent a %s frame to a process without the proof", typeName(f.Type))
	}
	// It serves on and takes the next upgrade.
	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("the next upgrade: %v", err)
	}
	up.Fail(errors.New("test over"))
}

// With the right half the old side sends its manifest, with the second half
// as its own proof; the pid the new process reports reaches the drain stream.
func TestOldProvesItselfInTheManifest(t *testing.T) {
	dir := shortDir(t)
	old := startOld(t, dir, testWait)
	_, ln, tok := fakeNew(t, dir, false)
	hc := acceptHandoff(t, ln)
	sendHello(t, hc, 4242, tok.newProof())
	m, files, err := readManifest(newDecoder(hc))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	if m.Proof != tok.oldProof() {
		t.Fatalf("manifest proof %q, want the token's second half %q", m.Proof, tok.oldProof())
	}
	p, _ := json.Marshal(ackMsg{PID: 4242})
	if err := writeFrame(hc, typeAck, 0, p, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.acked:
	case err := <-old.fails:
		t.Fatal(err)
	case <-time.After(testWait):
		t.Fatal("no ack seen")
	}
	if got := old.succ.ReportedPID(); got != 4242 {
		t.Fatalf("successor reported pid %d, want 4242", got)
	}
}

// A new process of an earlier version sends 'L' alone and no hello: the old
// side compares pids, as before, and its manifest carries no proof.
func TestOldTakesALegacyNewProcess(t *testing.T) {
	dir := shortDir(t)
	startOld(t, dir, testWait)
	_, ln, _ := fakeNew(t, dir, true)
	hc := acceptHandoff(t, ln)
	m, files, err := readManifest(newDecoder(hc))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	if m.Proof != "" || len(m.Entries) != 1 {
		t.Fatalf("manifest to a legacy peer: proof %q, %d entries", m.Proof, len(m.Entries))
	}
}

// fakeTokenOld is an old process of this version, by hand, on dir: it
// answers 'U', reads the token, dials listen.sock, reads the hello and
// sends the manifest that manifest returns (given the token and the hello's
// payload), with ln's socket; then after runs with the handoff connection.
func fakeTokenOld(t *testing.T, dir string, ln *net.TCPListener, manifest func(tok handoffToken, hello []byte) Manifest, after func(hc *net.UnixConn)) {
	t.Helper()
	fakeOld(t, dir, func(c *net.UnixConn) {
		c.Write([]byte{'U'})
		tok, _, err := readListenSignal(c)
		if err != nil {
			t.Error(err)
			return
		}
		raw, err := net.Dial("unix", filepath.Join(dir, ListenSock))
		if err != nil {
			t.Error(err)
			return
		}
		hc := raw.(*net.UnixConn)
		defer hc.Close()
		f, err := newDecoder(hc).Next()
		if err != nil || f.Type != typeHello {
			t.Errorf("first frame on listen.sock: %v %v, want hello", f.Type, err)
			return
		}
		lf := dupFile(t, ln)
		defer lf.Close()
		m := manifest(tok, f.Payload)
		m.Version, m.Generation = ProtocolVersion, 1
		m.Entries = []ident.Spec{{Name: "web", Kind: ident.KindServer, Network: "tcp", Address: ln.Addr().String()}}
		p, _ := json.Marshal(m)
		writeFrame(hc, typeManifest, 0, p, []int{int(lf.Fd())})
		after(hc)
	})
}

// The new side: the process that dialed listen.sock must show the second
// half of the token; one that shows another is refused and its descriptors
// closed.
func TestNewRefusesAManifestWithoutTheProof(t *testing.T) {
	for _, tt := range []struct {
		name  string
		proof func(got []byte) string
	}{
		{"wrong proof", func([]byte) string { return strings.Repeat("ab", tokenLen/2) }},
		// What an impostor can learn: the hello's half, which it sees.
		{"the hello's half", func(hello []byte) string {
			var h helloMsg
			json.Unmarshal(hello, &h)
			return h.Proof
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := shortDir(t)
			base := fdCount(t)
			ln := tcpListener(t)
			fakeTokenOld(t, dir, ln, func(_ handoffToken, hello []byte) Manifest {
				return Manifest{PID: 1, Proof: tt.proof(hello)}
			}, func(hc *net.UnixConn) { io.Copy(io.Discard, hc) }) // until the new side drops it
			_, err := Begin(testCtx(t, testWait), dir, quietLog())
			if err == nil || !strings.Contains(err.Error(), "handoff proof") {
				t.Fatalf("Begin = %v, want a refusal naming the handoff proof", err)
			}
			assertCleanNew(t, dir, base+2) // the fake's listener and our tcp listener
		})
	}
}

// The running process may refuse a request for a reason it gives (OnRequest):
// the new process fails with that reason, and the old one serves on.
func TestUpgradeRequestRefused(t *testing.T) {
	dir := shortDir(t)
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan int, 2)
	var refuse atomic.Bool
	refuse.Store(true)
	srv, err := u.TakeOver(ServerConfig{Log: quietLog(), HandoffTimeout: testWait,
		Export: func(send func(Manifest, []int) error) error { return send(Manifest{Generation: 1}, nil) },
		OnRequest: func(pid int) error {
			asked <- pid
			if refuse.Load() {
				return errors.New("this process is PID 1 of the requester's PID namespace")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = Begin(testCtx(t, testWait), dir, quietLog())
	if !errors.Is(err, ErrUpgradeRefused) || !strings.Contains(err.Error(), "PID 1 of the requester's PID namespace") {
		t.Fatalf("Begin = %v, want ErrUpgradeRefused with the reason", err)
	}
	if pid := <-asked; pid != os.Getpid() {
		t.Fatalf("OnRequest pid %d", pid)
	}
	refuse.Store(false)
	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("an admitted request after a refused one: %v", err)
	}
	up.Fail(errors.New("test over"))
}

// After a failed ack, whether the old process has gone is the handoff
// connection's to tell, not a pid's: gone when it closed its end before
// reading the ack, not when the ack was refused in time.
func TestPredecessorGone(t *testing.T) {
	t.Run("closed before our ack", func(t *testing.T) {
		dir := shortDir(t)
		ln := tcpListener(t)
		died := make(chan struct{})
		fakeTokenOld(t, dir, ln, func(handoffToken, []byte) Manifest { return Manifest{PID: 1} },
			func(hc *net.UnixConn) { hc.Close(); close(died) }) // and dies: nobody reads the ack
		u, err := Begin(testCtx(t, testWait), dir, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Fail(errors.New("test over"))
		<-died
		if u.PredecessorGone() {
			t.Fatal("gone before any ack was tried")
		}
		if err := u.Ack(testCtx(t, testWait)); err == nil {
			t.Fatal("ack to a closed connection succeeded")
		}
		if !u.PredecessorGone() {
			t.Fatal("the old process closed its end before our ack, but PredecessorGone is false")
		}
	})
	t.Run("ack refused past the deadline", func(t *testing.T) {
		dir := shortDir(t)
		ln := tcpListener(t)
		// An old process that stopped waiting a moment ago: it serves on.
		fakeTokenOld(t, dir, ln, func(tok handoffToken, _ []byte) Manifest {
			return Manifest{PID: 1, Proof: tok.oldProof(), AckDeadline: time.Now().Add(-time.Millisecond)}
		}, func(hc *net.UnixConn) { io.Copy(io.Discard, hc) })
		u, err := Begin(testCtx(t, testWait), dir, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Fail(errors.New("test over"))
		if err := u.Ack(testCtx(t, testWait)); err == nil || !strings.Contains(err.Error(), "stopped waiting") {
			t.Fatalf("ack past the old process's deadline: %v", err)
		}
		if u.PredecessorGone() {
			t.Fatal("an ack refused in time makes the live old process look gone")
		}
	})
	// The old process says how long it still waits; the new one counts it
	// on its own clock, whatever the wall clocks say (here the old one's
	// deadline, by its clock, reads as past). (Before: the wall-clock
	// deadline was compared across processes and the ack refused.)
	t.Run("ack timed on our own clock", func(t *testing.T) {
		dir := shortDir(t)
		ln := tcpListener(t)
		fakeTokenOld(t, dir, ln, func(tok handoffToken, _ []byte) Manifest {
			return Manifest{PID: 1, Proof: tok.oldProof(), AckDeadline: time.Now().Add(-time.Hour), AckTimeout: time.Minute}
		}, func(hc *net.UnixConn) { io.Copy(io.Discard, hc) })
		u, err := Begin(testCtx(t, testWait), dir, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Fail(errors.New("test over"))
		if err := u.Ack(testCtx(t, testWait)); err != nil {
			t.Fatalf("ack within the old process's timeout refused: %v", err)
		}
	})
}

func TestManifestEnvBounded(t *testing.T) {
	big := map[string]string{}
	for i := 0; i <= MaxEnv; i++ {
		big[strings.Repeat("k", i+1)] = "v"
	}
	for _, env := range []map[string]string{big, {"": "x"}, {"K": strings.Repeat("x", maxEnvValueLen+1)}} {
		if err := checkEnv(env); err == nil {
			t.Errorf("checkEnv accepted %d entries", len(env))
		}
	}
	if err := checkEnv(map[string]string{"WATCHDOG_USEC": "30000000"}); err != nil {
		t.Fatal(err)
	}
}

func TestManifestSessionTicketKeys(t *testing.T) {
	key := SessionTicketKey{Key: bytes.Repeat([]byte{0xab}, SessionTicketKeySize), Created: time.Unix(1700000000, 0)}
	if err := CheckSessionTicketKeys([]SessionTicketKey{key}); err != nil {
		t.Fatal(err)
	}
	many := make([]SessionTicketKey, MaxSessionTicketKeys+1)
	for i := range many {
		many[i] = key
	}
	for _, keys := range [][]SessionTicketKey{many, {{Key: key.Key[:16], Created: key.Created}}, {{Key: key.Key}}} {
		if err := CheckSessionTicketKeys(keys); err == nil {
			t.Errorf("accepted %d keys of %d bytes", len(keys), len(keys[0].Key))
		}
	}
	// Secret: no format shows the key.
	for _, out := range []string{fmt.Sprint(key), fmt.Sprintf("%v %+v %#v %s %x", key, key, []SessionTicketKey{key}, key, key)} {
		if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "171 171") || !strings.Contains(out, "redacted") {
			t.Errorf("a session ticket key prints as %q", out)
		}
	}
}
