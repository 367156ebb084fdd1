package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Header layout and limits shared by every protocol.
const (
	HeaderLen    = 10
	MaxPayload   = 16 << 20 // no frame type may allow more
	FlagOptional = 1 << 0   // a receiver that does not know the type skips the frame
	// MaxFDsPerChunk is SCM_MAX_FD, the kernel's limit per control message.
	MaxFDsPerChunk = 253
	skipChunk      = 32 << 10
)

// Type is a frame's type; its meaning belongs to the Protocol.
type Type uint8

// TypeSpec is what a Protocol allows a frame type to carry.
type TypeSpec struct {
	Name       string
	MaxPayload int // bytes; at most MaxPayload
	MaxFDs     int // descriptors; 0 for none
}

// Protocol is one framed protocol: its 4-byte magic and its frame types.
type Protocol struct {
	Magic string
	// Spec returns a type's limits, false for a type this version does not know.
	Spec func(Type) (TypeSpec, bool)
}

// Name names t for errors and logs.
func (p Protocol) Name(t Type) string {
	if s, ok := p.Spec(t); ok {
		return s.Name
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Frame is one decoded message. Whoever holds it owns FDs and must close them
// (CloseFDs) or take them (Files).
type Frame struct {
	Type    Type
	Flags   uint8
	Payload []byte
	FDs     []int
}

// CloseFDs closes the frame's descriptors.
func (f *Frame) CloseFDs() {
	CloseFDs(f.FDs)
	f.FDs = nil
}

// Files wraps the frame's descriptors in files that now own them; name names
// the i-th one.
func (f *Frame) Files(name func(i int) string) []*os.File {
	out := make([]*os.File, len(f.FDs))
	for i, fd := range f.FDs {
		out[i] = os.NewFile(uintptr(fd), name(i))
	}
	f.FDs = nil
	return out
}

// CloseFDs closes every descriptor in fds.
func CloseFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// Kinds of malformed frames a FrameError may wrap.
var (
	ErrBadMagic  = errors.New("bad magic")
	ErrTruncated = errors.New("truncated frame")
)

// FrameError is a malformed frame: the stream cannot be trusted after it.
type FrameError struct {
	msg  string
	kind error // ErrBadMagic, ErrTruncated or nil
	// Magic is what arrived in place of the protocol's magic (ErrBadMagic).
	Magic string
}

func (e *FrameError) Error() string { return "bad frame: " + e.msg }

// Unwrap returns the kind of the error, if it has one.
func (e *FrameError) Unwrap() error { return e.kind }

// BadFrame returns a FrameError.
func BadFrame(format string, args ...any) error {
	return &FrameError{msg: fmt.Sprintf(format, args...)}
}

func badFrameKind(kind error, format string, args ...any) error {
	return &FrameError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// IsFrameError reports whether err is (or wraps) a FrameError.
func IsFrameError(err error) bool {
	var fe *FrameError
	return errors.As(err, &fe)
}

// MsgReader is the part of *net.UnixConn the decoder needs.
type MsgReader interface {
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
}

// MsgWriter is the part of *net.UnixConn the encoder needs.
type MsgWriter interface {
	io.Writer
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

func (p Protocol) header(typ Type, flags uint8, n int) []byte {
	h := make([]byte, HeaderLen, HeaderLen+n)
	copy(h, p.Magic)
	h[4] = byte(typ)
	h[5] = flags
	binary.BigEndian.PutUint32(h[6:], uint32(n))
	return h
}

// limits returns the payload and descriptor limits for a header's type: the
// type's own if known, else what an optional frame may be skipped at.
func (p Protocol) limits(typ Type) (TypeSpec, bool) {
	if s, ok := p.Spec(typ); ok {
		return s, true
	}
	return TypeSpec{Name: p.Name(typ), MaxPayload: MaxPayload, MaxFDs: 1 << 16}, false
}

// WriteFrame sends one frame. fds ride on the first bytes: one byte per
// chunk of at most MaxFDsPerChunk, then the rest of the frame. The caller
// keeps ownership of fds and must keep them open until WriteFrame returns.
func (p Protocol) WriteFrame(w MsgWriter, typ Type, flags uint8, payload []byte, fds []int) error {
	spec, _ := p.limits(typ)
	if len(payload) > spec.MaxPayload {
		return fmt.Errorf("%s frame of %d bytes exceeds the %d byte limit of its type", spec.Name, len(payload), spec.MaxPayload)
	}
	if len(fds) > spec.MaxFDs {
		return fmt.Errorf("%s frame with %d descriptors exceeds the limit of %d", spec.Name, len(fds), spec.MaxFDs)
	}
	buf := append(p.header(typ, flags, len(payload)), payload...)
	off := 0
	for len(fds) > 0 {
		k := min(len(fds), MaxFDsPerChunk)
		if off >= len(buf) {
			return fmt.Errorf("%s frame too short to carry %d descriptors", spec.Name, len(fds))
		}
		n, _, err := w.WriteMsgUnix(buf[off:off+1], unix.UnixRights(fds[:k]...), nil)
		if err != nil {
			return err
		}
		if n != 1 {
			return errors.New("short write sending descriptors")
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

// Decoder reads frames of one protocol off a stream, collecting the
// descriptors that arrive with each.
type Decoder struct {
	r   MsgReader
	p   Protocol
	oob []byte
}

// NewDecoder returns a decoder reading p's frames from r.
func NewDecoder(r MsgReader, p Protocol) *Decoder {
	return &Decoder{r: r, p: p, oob: make([]byte, unix.CmsgSpace(MaxFDsPerChunk*4))}
}

// Next returns the next frame whose type the protocol knows. Unknown frames
// flagged optional are skipped (their descriptors closed); an unknown frame
// without the flag is an error. A clean end of stream before a frame is
// io.EOF. On error every descriptor received is closed.
func (d *Decoder) Next() (Frame, error) {
	for {
		f, known, err := d.read()
		if err != nil {
			return Frame{}, err
		}
		if known {
			return f, nil
		}
		if f.Flags&FlagOptional == 0 {
			return Frame{}, BadFrame("unknown mandatory frame %s", d.p.Name(f.Type))
		}
	}
}

func (d *Decoder) read() (Frame, bool, error) {
	var fds []int
	fail := func(err error) (Frame, bool, error) {
		CloseFDs(fds)
		return Frame{}, false, err
	}
	h := make([]byte, HeaderLen)
	if err := d.readFull(h, &fds, true); err != nil {
		return fail(err)
	}
	if string(h[:4]) != d.p.Magic {
		return fail(&FrameError{msg: fmt.Sprintf("bad magic %q, want %q", h[:4], d.p.Magic), kind: ErrBadMagic, Magic: string(h[:4])})
	}
	typ, flags, n := Type(h[4]), h[5], binary.BigEndian.Uint32(h[6:])
	spec, known := d.p.limits(typ)
	if uint64(n) > uint64(spec.MaxPayload) {
		return fail(BadFrame("%s frame of %d bytes exceeds the %d byte limit of its type", spec.Name, n, spec.MaxPayload))
	}
	// Descriptors ride on a frame's first bytes: those over the type's limit
	// are refused from the header, before the payload is read.
	if len(fds) > spec.MaxFDs {
		return fail(BadFrame("%s frame came with %d descriptors, its type carries at most %d", spec.Name, len(fds), spec.MaxFDs))
	}
	if !known {
		if flags&FlagOptional == 0 {
			return fail(BadFrame("unknown mandatory frame %s", spec.Name))
		}
		// Skipped: read in chunks, never held whole.
		buf := make([]byte, min(int(n), skipChunk))
		for left := int(n); left > 0; {
			k := min(left, len(buf))
			if err := d.readFull(buf[:k], &fds, false); err != nil {
				return fail(err)
			}
			left -= k
		}
		CloseFDs(fds)
		return Frame{Type: typ, Flags: flags}, false, nil
	}
	p := make([]byte, n)
	if err := d.readFull(p, &fds, false); err != nil {
		return fail(err)
	}
	if len(fds) > spec.MaxFDs {
		return fail(BadFrame("%s frame came with %d descriptors, its type carries at most %d", spec.Name, len(fds), spec.MaxFDs))
	}
	return Frame{Type: typ, Flags: flags, Payload: p, FDs: fds}, true, nil
}

// readFull fills b, appending any descriptors received to *fds. A clean EOF
// before the first header byte is io.EOF; EOF anywhere else is a truncated frame.
func (d *Decoder) readFull(b []byte, fds *[]int, atStart bool) error {
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
			return BadFrame("control message truncated: descriptors were lost")
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
				return badFrameKind(ErrTruncated, "truncated: connection closed after %d of %d bytes", got, len(b))
			}
			return err
		}
	}
	return nil
}

// parseRights returns every descriptor in a control message buffer. One
// parsed before an error is still returned so that the caller closes it.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, BadFrame("control message: %v", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, BadFrame("control message: %v", err)
		}
		for _, fd := range got {
			unix.CloseOnExec(fd) // already set by MSG_CMSG_CLOEXEC; made sure here
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
