package proxy

import (
	"time"

	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// ResponseFlags say why a request ended the way it did, in the spirit of
// Envoy's and MOSN's response flags (for an access log's %RESPONSE_FLAG%).
type ResponseFlags uint16

const (
	FlagNoRoute             ResponseFlags = 1 << iota // NR: no route matched
	FlagNoHealthyUpstream                             // UH: no healthy host
	FlagUpstreamConnectFail                           // UF: connecting failed
	FlagUpstreamTimeout                               // UT: no response head within the timeout
	FlagUpstreamReset                                 // UR: the upstream closed or garbled the exchange
	FlagDownstreamReset                               // DC: the client went away mid-request
	FlagBadRequest                                    // DPE: the request was refused by the parser or a limit
	FlagLocalResponse                                 // a direct_response route answered
)

// RequestInfo is what the engine records about one request: complete at
// its end, when the proxy's done hook (an access log, histograms) reads it.
// Byte slices point into the connection's buffers and are valid only
// during that call.
type RequestInfo struct {
	Listener string
	// Start is the arrival of the request's first byte; Duration runs from
	// it to the last byte of the answer written (or the request's failure).
	Start    time.Time
	Duration time.Duration
	// Request is the parsed head; nil if the head could not be read.
	Request *http1.Request
	// Downstream is the client's address ("" for unix sockets).
	Downstream string
	Cluster    string
	// Upstream is the host that answered (the last one tried), nil if none.
	Upstream *cluster.Host
	// UpstreamConnect is the time spent connecting to Upstream (0 when a
	// pooled connection carried the request); UpstreamResponse runs from
	// the request's head sent to the response's head received.
	UpstreamConnect  time.Duration
	UpstreamResponse time.Duration
	Attempts         int // upstream connections tried
	// BytesReceived and BytesSent are the request and response body bytes
	// (decoded, without chunk framing).
	BytesReceived, BytesSent int64
	Status                   int
	Flags                    ResponseFlags
}
