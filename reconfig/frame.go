package reconfig

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Frame header: magic, type, flags, big-endian payload length.
const (
	frameMagic     = "MLR1"
	headerLen      = 10
	maxFrameSize   = 16 << 20
	flagOptional   = 1 << 0 // a receiver that does not know the type skips the frame
	maxFDsPerChunk = 253    // SCM_MAX_FD: the kernel's limit per control message
)

// msgType is a frame's type. Values below 16 are the handoff; 16 and up are
// live connection migration.
type msgType uint8

const (
	typeManifest msgType = 1 // old → new, carries the listener fds
	typeAck      msgType = 2 // new → old: serving, stop accepting
	typeNack     msgType = 3 // new → old: giving up, reason inside
	typeCounters msgType = 4 // old → new after the ack: counter increments
	typeBye      msgType = 5 // old → new: exiting, nothing more follows

	// Live connection migration, after the ack (see migrate.go).
	typeConnOffer  msgType = 16 // old → new: one connection, its sockets as SCM_RIGHTS
	typeConnCommit msgType = 17 // old → new: a batch of offers is complete; answer now
	typeConnResult msgType = 18 // new → old: which offers of the batch it serves
)

func (t msgType) String() string {
	switch t {
	case typeManifest:
		return "manifest"
	case typeAck:
		return "ack"
	case typeNack:
		return "nack"
	case typeCounters:
		return "counters"
	case typeBye:
		return "bye"
	case typeConnOffer:
		return "connection offer"
	case typeConnCommit:
		return "migration commit"
	case typeConnResult:
		return "migration result"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// known reports whether this version understands t.
func (t msgType) known() bool {
	return (t >= typeManifest && t <= typeBye) || (t >= typeConnOffer && t <= typeConnResult)
}

// frame is one decoded message. fds were received with it; whoever holds
// the frame owns them and must close them.
type frame struct {
	typ     msgType
	flags   uint8
	payload []byte
	fds     []int
}

func (f *frame) closeFDs() {
	closeFDs(f.fds)
	f.fds = nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// msgReader is the part of *net.UnixConn the decoder needs.
type msgReader interface {
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
}

// frameError is a malformed frame: the stream cannot be trusted after it.
type frameError struct{ msg string }

func (e *frameError) Error() string { return "bad frame: " + e.msg }

func badFrame(format string, args ...any) error {
	return &frameError{msg: fmt.Sprintf(format, args...)}
}

// encodeHeader returns the header for a payload.
func encodeHeader(typ msgType, flags uint8, n int) []byte {
	h := make([]byte, headerLen, headerLen+n)
	copy(h, frameMagic)
	h[4] = byte(typ)
	h[5] = flags
	binary.BigEndian.PutUint32(h[6:], uint32(n))
	return h
}

// decodeHeader checks a header and returns type, flags and payload length.
func decodeHeader(h []byte) (msgType, uint8, int, error) {
	if len(h) != headerLen {
		return 0, 0, 0, badFrame("header is %d bytes, want %d", len(h), headerLen)
	}
	if string(h[:4]) != frameMagic {
		return 0, 0, 0, badFrame("bad magic %q, want %q", h[:4], frameMagic)
	}
	n := binary.BigEndian.Uint32(h[6:])
	if n > maxFrameSize {
		return 0, 0, 0, badFrame("%s frame of %d bytes exceeds the %d byte limit", msgType(h[4]), n, maxFrameSize)
	}
	return msgType(h[4]), h[5], int(n), nil
}

// decoder reads frames off a stream, collecting the fds that arrive with
// each. It reads exactly one frame's bytes at a time, so fds sent with a
// later frame are never taken with an earlier one.
type decoder struct {
	r   msgReader
	oob []byte
}

func newDecoder(r msgReader) *decoder {
	return &decoder{r: r, oob: make([]byte, unix.CmsgSpace(maxFDsPerChunk*4))}
}

// next returns the next frame whose type this version knows. Unknown frames
// flagged optional are skipped (their fds closed); an unknown frame without
// the flag is an error. On error every fd received is closed.
func (d *decoder) next() (frame, error) {
	for {
		f, err := d.read()
		if err != nil {
			return frame{}, err
		}
		if f.typ.known() {
			return f, nil
		}
		f.closeFDs()
		if f.flags&flagOptional == 0 {
			return frame{}, badFrame("unknown mandatory frame %s", f.typ)
		}
	}
}

func (d *decoder) read() (frame, error) {
	var fds []int
	h := make([]byte, headerLen)
	if err := d.readFull(h, &fds, true); err != nil {
		closeFDs(fds)
		return frame{}, err
	}
	typ, flags, n, err := decodeHeader(h)
	if err != nil {
		closeFDs(fds)
		return frame{}, err
	}
	p := make([]byte, n)
	if err := d.readFull(p, &fds, false); err != nil {
		closeFDs(fds)
		return frame{}, err
	}
	return frame{typ: typ, flags: flags, payload: p, fds: fds}, nil
}

// readFull fills b, appending any fds received to *fds. A clean EOF before
// the first header byte is io.EOF; EOF anywhere else is a truncated frame.
func (d *decoder) readFull(b []byte, fds *[]int, atStart bool) error {
	for got := 0; got < len(b); {
		n, oobn, flags, _, err := d.r.ReadMsgUnix(b[got:], d.oob)
		if oobn > 0 {
			rights, perr := parseRights(d.oob[:oobn])
			*fds = append(*fds, rights...)
			if perr != nil {
				return perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return badFrame("control message truncated: fds were lost")
		}
		got += n
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if atStart && got == 0 {
					return io.EOF
				}
				return badFrame("truncated: connection closed after %d of %d bytes", got, len(b))
			}
			return err
		}
	}
	return nil
}

// parseRights returns every fd in a control message buffer. An fd parsed
// before an error is still returned so that the caller closes it.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, badFrame("control message: %v", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, badFrame("control message: %v", err)
		}
		for _, fd := range got {
			unix.CloseOnExec(fd) // already set by MSG_CMSG_CLOEXEC; made sure here
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// msgWriter is the part of *net.UnixConn the encoder needs.
type msgWriter interface {
	io.Writer
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// writeFrame sends one frame. fds ride on the first bytes: one byte per
// chunk of at most maxFDsPerChunk fds, then the rest of the frame. The
// caller keeps ownership of fds.
func writeFrame(w msgWriter, typ msgType, flags uint8, payload []byte, fds []int) error {
	if len(payload) > maxFrameSize {
		return fmt.Errorf("%s frame of %d bytes exceeds the %d byte limit", typ, len(payload), maxFrameSize)
	}
	buf := append(encodeHeader(typ, flags, len(payload)), payload...)
	off := 0
	for len(fds) > 0 {
		k := min(len(fds), maxFDsPerChunk)
		if off >= len(buf) {
			return fmt.Errorf("%s frame too short to carry %d fds", typ, len(fds))
		}
		n, _, err := w.WriteMsgUnix(buf[off:off+1], unix.UnixRights(fds[:k]...), nil)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("short write sending fds")
		}
		off++
		fds = fds[k:]
	}
	if off < len(buf) {
		if _, err := w.Write(buf[off:]); err != nil {
			return err
		}
	}
	return nil
}
