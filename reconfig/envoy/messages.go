package envoy

import (
	"math"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"

	"github.com/mosnlite/mosnlite/service/stats/sample"
)

type shutdownAdminReply struct {
	// OriginalStartUnixNano is when the first epoch started (for uptime across epochs).
	OriginalStartUnixNano int64 `json:"original_start_unix_nano"`
}

type passSocketsReply struct {
	// Sockets are in descriptor order.
	Sockets []ident.Spec `json:"sockets"`
}

// drainRequest comes with one descriptor: the child's end of the drain
// stream (see package reconfig's Successor), on which the parent moves the
// connections of the listeners named here.
type drainRequest struct {
	Migration []reconfig.MigrationTarget `json:"migration,omitempty"`
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
