package envoy

import (
	"math"
	"os"

	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// ListenSocket is one listening socket handed from parent to child: its
// identity (the fields of listener.Spec) and its descriptor.
type ListenSocket struct {
	Name    string
	Kind    string // "server" or "service"
	Network string // "tcp" or "unix"
	Address string // normalised
	File    *os.File
}

// socketEntry is a ListenSocket on the wire; the descriptor travels beside it,
// in the same order.
type socketEntry struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Network string `json:"network"`
	Address string `json:"address"`
}

type shutdownAdminReply struct {
	// OriginalStartUnixNano is when the first epoch started (for uptime across epochs).
	OriginalStartUnixNano int64 `json:"original_start_unix_nano"`
}

type passSocketsRequest struct {
	// Network and Address select one socket; an empty Address asks for all.
	Network string `json:"network,omitempty"`
	Address string `json:"address,omitempty"`
}

type passSocketsReply struct {
	Sockets []socketEntry `json:"sockets"`
}

type statsReply struct {
	Samples []sample.Sample `json:"samples"`
}

type errorReply struct {
	Message string `json:"message"`
}

// finiteSamples drops values JSON cannot carry (NaN, ±Inf).
func finiteSamples(in []sample.Sample) []sample.Sample {
	out := make([]sample.Sample, 0, len(in))
	for _, s := range in {
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			continue
		}
		out = append(out, s)
	}
	return out
}
