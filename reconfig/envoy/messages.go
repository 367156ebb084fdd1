package envoy

import (
	"math"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

type shutdownAdminReply struct {
	// OriginalStartUnixNano is when the first epoch started (for uptime across epochs).
	OriginalStartUnixNano int64 `json:"original_start_unix_nano"`
}

type passSocketsReply struct {
	// Sockets are in descriptor order.
	Sockets []ident.Spec `json:"sockets"`
	// SessionTicketKeys are the lineage's TLS session ticket keys (secret;
	// this socket is peer-checked). Absent from an older parent.
	SessionTicketKeys []reconfig.SessionTicketKey `json:"session_ticket_keys,omitempty"`
}

// drainRequest comes with one descriptor: the child's end of the drain
// stream (see package reconfig's Successor), on which the parent moves the
// connections of the listeners named here.
type drainRequest struct {
	Migration []reconfig.MigrationTarget `json:"migration,omitempty"`
}

// statsRequest: with Histograms the child takes histogram states too, and a
// reply in several parts (an older child sends no payload: one part,
// counters and gauges only).
type statsRequest struct {
	Histograms bool `json:"histograms,omitempty"`
}

type statsReply struct {
	Samples    []sample.Sample        `json:"samples"`
	Histograms []histsample.Histogram `json:"histograms,omitempty"`
	// More: another part of this reply follows at once (only to a child
	// that asked for histograms).
	More bool `json:"more,omitempty"`
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
