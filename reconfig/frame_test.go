package reconfig

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

func rawFrame(magic string, typ msgType, flags uint8, length uint32, payload []byte) []byte {
	b := []byte(magic)
	b = append(b, byte(typ), flags)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func manifestJSON(t *testing.T, entries int) []byte {
	t.Helper()
	m := Manifest{Version: ProtocolVersion, PID: 1}
	for i := 0; i < entries; i++ {
		m.Entries = append(m.Entries, ident.Spec{Name: "l", Kind: ident.KindServer, Network: "tcp", Address: "127.0.0.1:1"})
	}
	p, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sendRaw writes b on w, with fds riding on its first byte.
func sendRaw(t *testing.T, w *net.UnixConn, b []byte, fds []int) {
	t.Helper()
	off := 0
	if len(fds) > 0 {
		if _, _, err := w.WriteMsgUnix(b[:1], unix.UnixRights(fds...), nil); err != nil {
			t.Fatal(err)
		}
		off = 1
	}
	if _, err := w.Write(b[off:]); err != nil {
		t.Fatal(err)
	}
}

func TestGarbledFrames(t *testing.T) {
	tests := []struct {
		name     string
		bytes    func(t *testing.T) []byte
		fds      int
		manifest bool
		want     string
	}{
		{name: "bad magic", bytes: func(t *testing.T) []byte { return rawFrame("XLR1", typeAck, 0, 2, []byte("{}")) }, fds: 2, want: "bad magic"},
		{name: "oversize length", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeManifest, 0, maxFrameSize+1, nil) }, fds: 1, want: "exceeds"},
		{name: "bad json", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeManifest, 0, 1, []byte("{")) }, fds: 1, manifest: true, want: "manifest payload"},
		{name: "fd count mismatch", bytes: func(t *testing.T) []byte {
			p := manifestJSON(t, 2)
			return rawFrame(frameMagic, typeManifest, 0, uint32(len(p)), p)
		}, fds: 1, manifest: true, want: "lists 2 listeners but 1 fds"},
		{name: "protocol version", bytes: func(t *testing.T) []byte {
			p := []byte(`{"version":99,"entries":[{"name":"a"}]}`)
			return rawFrame(frameMagic, typeManifest, 0, uint32(len(p)), p)
		}, fds: 1, manifest: true, want: "protocol version 99"},
		{name: "unknown mandatory type", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, 99, 0, 2, []byte("{}")) }, fds: 1, want: "unknown mandatory frame type 99"},
		{name: "not a manifest", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeAck, 0, 2, []byte("{}")) }, manifest: true, want: "expected manifest, got ack"},
		{name: "descriptors on an ack", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeAck, 0, 2, []byte("{}")) }, fds: 1, want: "ack frame came with 1 descriptors, its type carries at most 0"},
		// A nack needs kilobytes: a 15 MiB one is refused from its header, before
		// anything is read or allocated.
		{name: "oversize nack", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeNack, 0, 15<<20, []byte("{")) }, want: "nack frame of 15728640 bytes exceeds the 4096 byte limit"},
		{name: "truncated frame", bytes: func(t *testing.T) []byte { return rawFrame(frameMagic, typeManifest, 0, 100, []byte("{")) }, fds: 2, manifest: true, want: "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := fdCount(t)
			r, w := unixPair(t)
			base += 2
			fds := devNullFDs(t, tt.fds)
			sendRaw(t, w, tt.bytes(t), fds)
			closeFDs(fds) // the copies in flight are the reader's now
			w.CloseWrite()
			r.SetDeadline(time.Now().Add(testWait))
			d := newDecoder(r)
			var err error
			if tt.manifest {
				_, _, err = readManifest(d)
			} else {
				_, err = d.Next()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if fdCount(t) > base {
				t.Fatalf("received fds leaked: %d open, want %d", fdCount(t), base)
			}
		})
	}
}

func TestUnknownOptionalFrameSkipped(t *testing.T) {
	base := fdCount(t)
	r, w := unixPair(t)
	base += 2
	fds := devNullFDs(t, 2)
	sendRaw(t, w, rawFrame(frameMagic, 77, flagOptional, 5, []byte("hello")), fds)
	closeFDs(fds)
	if err := writeFrame(w, typeAck, 0, []byte(`{"pid":7}`), nil); err != nil {
		t.Fatal(err)
	}
	r.SetDeadline(time.Now().Add(testWait))
	f, err := newDecoder(r).Next()
	if err != nil {
		t.Fatal(err)
	}
	var a ackMsg
	if f.Type != typeAck || decodePayload(f, &a) != nil || a.PID != 7 {
		t.Fatalf("got %v %s, want the ack after the skipped frame", f.Type, f.Payload)
	}
	if n := fdCount(t); n > base {
		t.Fatalf("fds of the skipped frame leaked: %d open, want %d", n, base)
	}
}

// More fds than one control message may carry go in batches and arrive
// with their frame, and a following frame is read on its own.
func TestManyFDsInBatches(t *testing.T) {
	base := fdCount(t)
	r, w := unixPair(t)
	base += 2
	const n = 300
	fds := devNullFDs(t, n)
	p := manifestJSON(t, n)
	done := make(chan error, 1)
	go func() {
		err := writeFrame(w, typeManifest, 0, p, fds)
		if err == nil {
			err = writeFrame(w, typeBye, 0, nil, nil)
		}
		done <- err
	}()
	r.SetDeadline(time.Now().Add(testWait))
	d := newDecoder(r)
	m, files, err := readManifest(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	closeFDs(fds)
	if len(m.Entries) != n || len(files) != n {
		t.Fatalf("got %d entries, %d files; want %d", len(m.Entries), len(files), n)
	}
	for _, f := range files {
		fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		if err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Fatalf("received fd not close-on-exec: %v", err)
		}
		f.Close()
	}
	f, err := d.Next()
	if err != nil || f.Type != typeBye || len(f.FDs) != 0 {
		t.Fatalf("next frame = %v, %d fds, %v; want bye", f.Type, len(f.FDs), err)
	}
	if k := fdCount(t); k > base {
		t.Fatalf("%d fds open, want %d", k, base)
	}
}

func TestCleanEOF(t *testing.T) {
	r, w := unixPair(t)
	w.CloseWrite()
	r.SetDeadline(time.Now().Add(testWait))
	if _, err := newDecoder(r).Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want io.EOF at a frame boundary", err)
	}
}

// bytesReader feeds a decoder from memory, a few bytes at a time, with no
// control data.
type bytesReader struct {
	b    []byte
	step int
}

func (r *bytesReader) ReadMsgUnix(p, oob []byte) (int, int, int, *net.UnixAddr, error) {
	if len(r.b) == 0 {
		return 0, 0, 0, nil, io.EOF
	}
	n := min(len(p), len(r.b), r.step)
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, 0, 0, nil, nil
}

func FuzzDecoder(f *testing.F) {
	f.Add(rawFrame(frameMagic, typeAck, 0, 9, []byte(`{"pid":1}`)), uint8(3))
	f.Add(rawFrame(frameMagic, typeManifest, 0, 2, []byte(`{}`)), uint8(1))
	f.Add(rawFrame(frameMagic, 40, flagOptional, 1, []byte(`x`)), uint8(7))
	f.Add(append(rawFrame(frameMagic, typeCounters, 0, 15, []byte(`{"counters":[]}`)), rawFrame(frameMagic, typeBye, 0, 0, nil)...), uint8(10))
	f.Add([]byte("MLR1\x01\x00\xff\xff\xff\xff"), uint8(10))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		d := wire.NewDecoder(&bytesReader{b: bytes.Clone(data), step: int(step%16) + 1}, protocol())
		for i := 0; i < 64; i++ {
			fr, err := d.Next()
			if err != nil {
				return
			}
			if spec, known := frameSpec(fr.Type); !known || len(fr.Payload) > spec.MaxPayload || len(fr.FDs) != 0 {
				t.Fatalf("decoder returned an impossible frame: %v %d", fr.Type, len(fr.Payload))
			}
			var m Manifest
			_ = decodePayload(fr, &m)
		}
	})
}
