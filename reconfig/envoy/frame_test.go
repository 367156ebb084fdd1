package envoy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// connPair is a connected pair of unix stream sockets; raw is a's descriptor
// for writing arbitrary bytes and control messages.
func connPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c.(*net.UnixConn)
	}
	return wrap(fds[0]), wrap(fds[1])
}

// pipeProbe returns a pipe's read end and write end. If every copy of the
// write end is closed, reading the read end gives EOF; that is how the tests
// see that a received descriptor was closed.
func pipeProbe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	return r, w
}

func assertAllWriteEndsClosed(t *testing.T, r *os.File) {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read %d, %v: a received descriptor was not closed", n, err)
	}
}

func rawHeader(magic string, typ msgType, size uint32) []byte {
	h := make([]byte, wire.HeaderLen)
	copy(h, magic)
	h[4] = byte(typ)
	binary.BigEndian.PutUint32(h[6:], size)
	return h
}

func sendRaw(t *testing.T, c *net.UnixConn, data []byte, files ...*os.File) {
	t.Helper()
	var oob []byte
	if len(files) > 0 {
		var fds []int
		for _, f := range files {
			fd, err := wire.RawFD(f)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(data, oob, nil); err != nil {
		t.Fatal(err)
	}
}

func TestFrameRoundTripWithDescriptors(t *testing.T) {
	a, b := connPair(t)
	r, w := pipeProbe(t)
	body := passSocketsReply{Sockets: []ident.Spec{{Name: "l1", Kind: "server", Network: "tcp", Address: "127.0.0.1:1"}}}
	if err := writeFrame(a, msgPassSocketsReply, body, []*os.File{w}); err != nil {
		t.Fatal(err)
	}
	f, err := readFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	var got passSocketsReply
	if err := f.decode(&got); err != nil {
		t.Fatal(err)
	}
	if f.typ != msgPassSocketsReply || len(f.files) != 1 || len(got.Sockets) != 1 || got.Sockets[0] != body.Sockets[0] {
		t.Fatalf("got %v %+v with %d files", f.typ, got, len(f.files))
	}
	// The received descriptor is the pipe: write through it.
	if _, err := f.files[0].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(r, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v", buf, err)
	}
	// The sender keeps its own file open and usable.
	if _, err := w.Write([]byte("y")); err != nil {
		t.Fatalf("writeFrame closed the caller's file: %v", err)
	}
	f.closeFiles()
}

func TestFrameLargePayload(t *testing.T) {
	a, b := connPair(t)
	big := statsReply{Samples: make([]sample.Sample, 20000)}
	for i := range big.Samples {
		big.Samples[i] = sample.Sample{Name: strings.Repeat("a", 50), Kind: sample.KindCounter, Value: float64(i)}
	}
	errc := make(chan error, 1)
	go func() { errc <- writeFrame(a, msgStatsReply, big, nil) }()
	f, err := readFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var got statsReply
	if err := f.decode(&got); err != nil || len(got.Samples) != len(big.Samples) {
		t.Fatalf("large payload: %v, %d samples", err, len(got.Samples))
	}
}

func TestGarbledFramesCloseDescriptors(t *testing.T) {
	cases := []struct {
		name    string
		data    []byte
		closeA  bool // close the sender after writing (truncated frame)
		wantErr error
	}{
		{"bad magic", append(rawHeader("XXXX", msgStatsReply, 2), "{}"...), false, ErrGarbled},
		{"descriptors on a type without", append(rawHeader(frameMagic, msgStatsReply, 2), "{}"...), false, ErrGarbled},
		{"other version", append(rawHeader("MLH1", msgStatsReply, 2), "{}"...), false, ErrIncompatible},
		{"oversized", rawHeader(frameMagic, msgStatsReply, maxStatsPayload+1), false, ErrGarbled},
		{"oversized error reply", rawHeader(frameMagic, msgError, maxSmallPayload+1), false, ErrGarbled},
		{"truncated payload", append(rawHeader(frameMagic, msgPassSocketsReply, 100), "{}"...), true, io.ErrUnexpectedEOF},
		{"truncated header", rawHeader(frameMagic, msgStatsReply, 0)[:6], true, io.ErrUnexpectedEOF},
		// Refused from its header, before its payload is read.
		{"descriptors on a type without, payload never sent", rawHeader(frameMagic, msgStatsReply, 100), false, ErrGarbled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := connPair(t)
			r, w := pipeProbe(t)
			sendRaw(t, a, tc.data, w)
			_ = w.Close() // now only the copy in flight holds the write end
			if tc.closeA {
				_ = a.Close()
			}
			f, err := readFrame(b)
			if err == nil {
				f.closeFiles()
				t.Fatal("garbled frame accepted")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			assertAllWriteEndsClosed(t, r)
		})
	}
}

func TestGarbledPayloadIsAClearError(t *testing.T) {
	a, b := connPair(t)
	sendRaw(t, a, append(rawHeader(frameMagic, msgStatsReply, 5), "{nope"...))
	f, err := readFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	var got statsReply
	if err := f.decode(&got); !errors.Is(err, ErrGarbled) {
		t.Fatalf("decode: %v, want ErrGarbled", err)
	}
}

func TestReadFrameEOF(t *testing.T) {
	a, b := connPair(t)
	_ = a.Close()
	if _, err := readFrame(b); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want io.EOF", err)
	}
}
