package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// Wire format: every message is one frame of the shared codec (package wire),
// with this protocol's magic and frame types. The magic carries the protocol
// version: "MLH" and ProtocolVersion as a digit (see version.go).
const (
	magicPrefix = "MLH"
	frameMagic  = magicPrefix + string(rune('0'+ProtocolVersion))
	// maxFrameFDs bounds the descriptors of one frame: the listening sockets
	// of one process, which wire sends in batches of 253.
	maxFrameFDs = 1 << 16
)

// Per-type payload limits: what each message needs.
const (
	maxSmallPayload   = 4 << 10         // requests, empty replies, an error message
	maxSocketsPayload = 16 << 20        // one entry per listening socket
	maxStatsPayload   = wire.MaxPayload // every series of a registry
	// maxErrorMessage bounds the message of an error reply, sent or logged.
	maxErrorMessage = 1024
)

// msgType tells what a frame carries. Requests are odd, their replies even.
type msgType = wire.Type

const (
	msgShutdownAdmin      msgType = 1
	msgShutdownAdminReply msgType = 2
	msgPassSockets        msgType = 3
	msgPassSocketsReply   msgType = 4
	msgStats              msgType = 5
	msgStatsReply         msgType = 6
	msgDrain              msgType = 7 // carries one descriptor: the child's end of the drain stream
	msgDrainReply         msgType = 8
	msgTerminate          msgType = 9
	msgTerminateReply     msgType = 10
	msgError              msgType = 15 // reply: the request failed or was not understood
)

func frameSpec(t wire.Type) (wire.TypeSpec, bool) {
	small := func(name string) (wire.TypeSpec, bool) {
		return wire.TypeSpec{Name: name, MaxPayload: maxSmallPayload}, true
	}
	switch t {
	case msgShutdownAdmin:
		return small("shutdown_admin")
	case msgShutdownAdminReply:
		return small("shutdown_admin_reply")
	case msgPassSockets:
		return small("pass_listen_sockets")
	case msgPassSocketsReply:
		return wire.TypeSpec{Name: "pass_listen_sockets_reply", MaxPayload: maxSocketsPayload, MaxFDs: maxFrameFDs}, true
	case msgStats:
		return small("stats")
	case msgStatsReply:
		return wire.TypeSpec{Name: "stats_reply", MaxPayload: maxStatsPayload}, true
	case msgDrain:
		return wire.TypeSpec{Name: "drain_listeners", MaxPayload: maxSmallPayload << 4, MaxFDs: 1}, true
	case msgDrainReply:
		return small("drain_listeners_reply")
	case msgTerminate:
		return small("terminate")
	case msgTerminateReply:
		return small("terminate_reply")
	case msgError:
		return small("error")
	}
	return wire.TypeSpec{}, false
}

func protocol() wire.Protocol { return wire.Protocol{Magic: frameMagic, Spec: frameSpec} }

func typeName(t msgType) string { return protocol().Name(t) }

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
		return fmt.Errorf("envoy: decode %v: %v: %w", typeName(f.typ), err, ErrGarbled)
	}
	return nil
}

// writeFrame sends one frame with files attached. The caller keeps its files
// (open until writeFrame returns).
func writeFrame(c *net.UnixConn, typ msgType, body any, files []*os.File) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("envoy: encode %v: %w", typeName(typ), err)
		}
	}
	fds := make([]int, 0, len(files))
	for _, f := range files {
		if f == nil {
			return fmt.Errorf("envoy: %v: nil file", typeName(typ))
		}
		fd, err := wire.RawFD(f)
		if err != nil {
			return fmt.Errorf("envoy: %v: %s: %w", typeName(typ), f.Name(), err)
		}
		fds = append(fds, fd)
	}
	err := protocol().WriteFrame(c, typ, 0, payload, fds)
	runtime.KeepAlive(files)
	if err != nil {
		return fmt.Errorf("envoy: send %v: %w", typeName(typ), err)
	}
	return nil
}

// readFrame reads one frame. Every received descriptor is closed on any error.
func readFrame(c *net.UnixConn) (frame, error) {
	f, err := wire.NewDecoder(c, protocol()).Next()
	if err != nil {
		var fe *wire.FrameError
		switch {
		case errors.Is(err, io.EOF):
			return frame{}, io.EOF
		case errors.As(err, &fe) && strings.HasPrefix(fe.Magic, magicPrefix):
			return frame{}, fmt.Errorf("envoy: receive: %v: the peer speaks another hot restart protocol: %w", err, ErrIncompatible)
		case errors.Is(err, wire.ErrTruncated):
			return frame{}, fmt.Errorf("envoy: receive: %v: %w", err, io.ErrUnexpectedEOF)
		case wire.IsFrameError(err):
			return frame{}, fmt.Errorf("envoy: receive: %v: %w", err, ErrGarbled)
		}
		return frame{}, fmt.Errorf("envoy: receive: %w", err)
	}
	return frame{typ: f.Type, payload: f.Payload, files: f.Files(func(int) string { return "hot-restart-fd" })}, nil
}
