package reconfig

import (
	"github.com/mosnlite/mosnlite/reconfig/wire"
)

// The frame codec is wire's; this file is the MOSN-style protocol's table:
// its magic and, per frame type, how large a payload and how many
// descriptors it may carry.
const (
	frameMagic   = "MLR1"
	flagOptional = wire.FlagOptional
	maxFrameSize = wire.MaxPayload
)

// Per-type payload limits (see doc.go). A frame over its type's limit is
// refused from its header, before anything is allocated.
const (
	maxManifestSize = wire.MaxPayload // entries, every counter series and every histogram that fits
	maxCountersSize = wire.MaxPayload // one part of a push: larger pushes are split (Counts.More)
	maxAckSize      = 1 << 20         // the migration list: one entry per listener
	maxNackSize     = 4 << 10         // a reason, bounded by maxNackReason
	maxSmallSize    = 1 << 10         // bye, done, release, hello: a pid (and a proof)
	maxOfferSize    = 12 << 20        // two 4 MiB pending buffers, base64
	maxCommitSize   = 2 << 20         // up to maxBatchOffers ids
	maxResultSize   = wire.MaxPayload // ids and a bounded reason per refusal
	// maxNackReason bounds the reason a nack carries (and that we log).
	maxNackReason = 1024
	// maxRefusal bounds the reason that follows an 'R' on reconfig.sock.
	maxRefusal = 1024
	// maxManifestFDs bounds the listeners one manifest may hand over.
	maxManifestFDs = 1 << 16
)

// msgType is a frame's type. Values below 16 are the handoff; 16 and up are
// live connection migration.
type msgType = wire.Type

const (
	typeManifest msgType = 1 // old → new, carries the listener fds
	typeAck      msgType = 2 // new → old: serving, stop accepting
	typeNack     msgType = 3 // new → old: giving up, reason inside
	typeCounters msgType = 4 // old → new after the ack: counter increments
	typeBye      msgType = 5 // old → new: drained, nothing more follows
	typeDone     msgType = 6 // new → old: bye handled, every counter is in
	typeRelease  msgType = 7 // new → old: stop watching us (see the watch period)
	typeHello    msgType = 8 // new → old, first on listen.sock: the handoff proof (see proof.go)
	typeAbort    msgType = 9 // old → new, instead of taking an ack: the handoff is off, the old serves on

	// Live connection migration, after the ack (see migrate.go).
	typeConnOffer  msgType = 16 // old → new: one connection, its sockets as SCM_RIGHTS
	typeConnCommit msgType = 17 // old → new: a batch of offers is complete; answer now
	typeConnResult msgType = 18 // new → old: which offers of the batch it serves
	typeMigrated   msgType = 19 // old → new: the migration is over (MigrationDone)
)

// frameSpec is the protocol's table of frame types.
func frameSpec(t wire.Type) (wire.TypeSpec, bool) {
	switch t {
	case typeManifest:
		return wire.TypeSpec{Name: "manifest", MaxPayload: maxManifestSize, MaxFDs: maxManifestFDs}, true
	case typeAck:
		return wire.TypeSpec{Name: "ack", MaxPayload: maxAckSize}, true
	case typeNack:
		return wire.TypeSpec{Name: "nack", MaxPayload: maxNackSize}, true
	case typeCounters:
		return wire.TypeSpec{Name: "counters", MaxPayload: maxCountersSize}, true
	case typeBye:
		return wire.TypeSpec{Name: "bye", MaxPayload: maxSmallSize}, true
	case typeDone:
		return wire.TypeSpec{Name: "done", MaxPayload: maxSmallSize}, true
	case typeRelease:
		return wire.TypeSpec{Name: "release", MaxPayload: maxSmallSize}, true
	case typeHello:
		return wire.TypeSpec{Name: "hello", MaxPayload: maxSmallSize}, true
	case typeAbort:
		return wire.TypeSpec{Name: "abort", MaxPayload: maxNackSize}, true
	case typeConnOffer:
		return wire.TypeSpec{Name: "connection offer", MaxPayload: maxOfferSize, MaxFDs: 2}, true
	case typeConnCommit:
		return wire.TypeSpec{Name: "migration commit", MaxPayload: maxCommitSize}, true
	case typeConnResult:
		return wire.TypeSpec{Name: "migration result", MaxPayload: maxResultSize}, true
	case typeMigrated:
		return wire.TypeSpec{Name: "migration done", MaxPayload: maxSmallSize}, true
	}
	return wire.TypeSpec{}, false
}

func protocol() wire.Protocol { return wire.Protocol{Magic: frameMagic, Spec: frameSpec} }

type frame = wire.Frame

func newDecoder(r wire.MsgReader) *wire.Decoder { return wire.NewDecoder(r, protocol()) }

func writeFrame(w wire.MsgWriter, typ msgType, flags uint8, payload []byte, fds []int) error {
	return protocol().WriteFrame(w, typ, flags, payload, fds)
}

func typeName(t msgType) string { return protocol().Name(t) }

func badFrame(format string, args ...any) error { return wire.BadFrame(format, args...) }

func closeFDs(fds []int) { wire.CloseFDs(fds) }
