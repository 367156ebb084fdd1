package envoy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Wire format: every message is one frame on the stream socket,
//
//	magic "MLHR" | version u8 | type u8 | fd count u16 | payload length u32 | payload (JSON)
//
// integers big-endian. A frame that carries descriptors sends them as one
// SCM_RIGHTS message with the frame's first bytes, in one sendmsg.
const (
	frameMagic  = "MLHR"
	headerLen   = 12
	maxPayload  = 64 << 20
	maxFrameFDs = 250 // below the kernel's SCM_MAX_FD (253)
)

// msgType tells what a frame carries. Requests are odd, their replies even.
type msgType uint8

const (
	msgShutdownAdmin      msgType = 1
	msgShutdownAdminReply msgType = 2
	msgPassSockets        msgType = 3
	msgPassSocketsReply   msgType = 4
	msgStats              msgType = 5
	msgStatsReply         msgType = 6
	msgDrain              msgType = 7
	msgDrainReply         msgType = 8
	msgTerminate          msgType = 9
	msgTerminateReply     msgType = 10
	msgError              msgType = 15 // reply: the request failed or was not understood
)

func (t msgType) String() string {
	switch t {
	case msgShutdownAdmin:
		return "shutdown_admin"
	case msgShutdownAdminReply:
		return "shutdown_admin_reply"
	case msgPassSockets:
		return "pass_listen_sockets"
	case msgPassSocketsReply:
		return "pass_listen_sockets_reply"
	case msgStats:
		return "stats"
	case msgStatsReply:
		return "stats_reply"
	case msgDrain:
		return "drain_listeners"
	case msgDrainReply:
		return "drain_listeners_reply"
	case msgTerminate:
		return "terminate"
	case msgTerminateReply:
		return "terminate_reply"
	case msgError:
		return "error"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ErrGarbled: the peer sent something that is not a well-formed frame.
var ErrGarbled = errors.New("garbled hot restart message")

// frame is one received message. The receiver owns files.
type frame struct {
	typ     msgType
	payload []byte
	files   []*os.File
}

func (f *frame) closeFiles() {
	for _, file := range f.files {
		_ = file.Close()
	}
	f.files = nil
}

// decode unmarshals the payload into v.
func (f *frame) decode(v any) error {
	if len(f.payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(f.payload, v); err != nil {
		return fmt.Errorf("envoy: decode %v: %v: %w", f.typ, err, ErrGarbled)
	}
	return nil
}

// writeFrame sends one frame with files attached. The caller keeps its files;
// what goes over the socket are duplicates made here and closed after sending.
func writeFrame(c *net.UnixConn, typ msgType, body any, files []*os.File) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("envoy: encode %v: %w", typ, err)
		}
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("envoy: %v payload is %d bytes, limit %d", typ, len(payload), maxPayload)
	}
	if len(files) > maxFrameFDs {
		return fmt.Errorf("envoy: %v carries %d descriptors, limit %d", typ, len(files), maxFrameFDs)
	}
	buf := make([]byte, headerLen+len(payload))
	copy(buf, frameMagic)
	buf[4] = ProtocolVersion
	buf[5] = byte(typ)
	binary.BigEndian.PutUint16(buf[6:], uint16(len(files)))
	binary.BigEndian.PutUint32(buf[8:], uint32(len(payload)))
	copy(buf[headerLen:], payload)

	fds := make([]int, 0, len(files))
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for _, f := range files {
		fd, err := dupFile(f)
		if err != nil {
			return fmt.Errorf("envoy: %v: %w", typ, err)
		}
		fds = append(fds, fd)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, oobn, err := c.WriteMsgUnix(buf, oob, nil)
	if err != nil {
		return fmt.Errorf("envoy: send %v: %w", typ, err)
	}
	if oobn != len(oob) {
		return fmt.Errorf("envoy: send %v: descriptors not sent (%d of %d bytes)", typ, oobn, len(oob))
	}
	if n < len(buf) { // a stream socket may take a large frame in parts
		if _, err := c.Write(buf[n:]); err != nil {
			return fmt.Errorf("envoy: send %v: %w", typ, err)
		}
	}
	return nil
}

// dupFile returns a close-on-exec duplicate of f's descriptor. It goes through
// SyscallConn so that f (and the socket it shares a file description with) is
// never switched to blocking mode, as (*os.File).Fd would do.
func dupFile(f *os.File) (int, error) {
	if f == nil {
		return -1, errors.New("nil file")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	dup, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	if derr != nil {
		return -1, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	return dup, nil
}

// readFrame reads one frame. Every received descriptor is closed on any error.
func readFrame(c *net.UnixConn) (frame, error) {
	var fds []int
	fail := func(err error) (frame, error) {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return frame{}, err
	}
	hdr := make([]byte, headerLen)
	oob := make([]byte, unix.CmsgSpace(4*maxFrameFDs))
	for got := 0; got < headerLen; {
		n, oobn, flags, _, err := c.ReadMsgUnix(hdr[got:], oob)
		if oobn > 0 {
			rfds, perr := parseRights(oob[:oobn])
			fds = append(fds, rfds...)
			if perr != nil {
				return fail(perr)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fail(fmt.Errorf("envoy: receive: descriptors truncated (MSG_CTRUNC): %w", ErrGarbled))
		}
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if got == 0 {
					return fail(io.EOF)
				}
				return fail(fmt.Errorf("envoy: receive: connection closed inside a header: %w", io.ErrUnexpectedEOF))
			}
			return fail(fmt.Errorf("envoy: receive: %w", err))
		}
		got += n
	}
	if string(hdr[:4]) != frameMagic {
		return fail(fmt.Errorf("envoy: receive: bad magic %q: %w", hdr[:4], ErrGarbled))
	}
	if hdr[4] != ProtocolVersion {
		return fail(fmt.Errorf("envoy: receive: peer speaks protocol %d, we speak %d: %w", hdr[4], ProtocolVersion, ErrIncompatible))
	}
	typ := msgType(hdr[5])
	nfds := int(binary.BigEndian.Uint16(hdr[6:]))
	size := binary.BigEndian.Uint32(hdr[8:])
	if nfds != len(fds) {
		return fail(fmt.Errorf("envoy: receive %v: header announces %d descriptors, %d arrived: %w", typ, nfds, len(fds), ErrGarbled))
	}
	if size > maxPayload {
		return fail(fmt.Errorf("envoy: receive %v: payload of %d bytes exceeds %d: %w", typ, size, maxPayload, ErrGarbled))
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(c, payload); err != nil {
		return fail(fmt.Errorf("envoy: receive %v payload: %w", typ, err))
	}
	f := frame{typ: typ, payload: payload}
	for _, fd := range fds {
		f.files = append(f.files, os.NewFile(uintptr(fd), "hot-restart-fd"))
	}
	return f, nil
}

// parseRights extracts the descriptors of every SCM_RIGHTS message in oob.
// Descriptors found before an error are returned too, so the caller closes them.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("envoy: receive: control data: %v: %w", err, ErrGarbled)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			return fds, fmt.Errorf("envoy: receive: unexpected control message %d/%d: %w", m.Header.Level, m.Header.Type, ErrGarbled)
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("envoy: receive: rights: %v: %w", err, ErrGarbled)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
