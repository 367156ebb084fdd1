package proxy

import (
	"net"
	"strings"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// ResponseFlags say why a request (or a TCP session) ended the way it did.
// The bits MOSN has are MOSN's (api.ResponseFlag), so that an access log's
// %upstream_transport_failure_reason% reads as MOSN's; mosnlite's own are
// above them.
type ResponseFlags uint32

const (
	FlagNoHealthyUpstream   ResponseFlags = 0x2    // UH: no healthy host
	FlagUpstreamTimeout     ResponseFlags = 0x4    // UT: no response head within the timeout
	FlagUpstreamReset       ResponseFlags = 0x10   // UR: the upstream closed or garbled the exchange
	FlagUpstreamConnectFail ResponseFlags = 0x20   // UF: connecting failed
	FlagUpstreamOverflow    ResponseFlags = 0x80   // UO: a circuit breaker refused it (503)
	FlagNoRoute             ResponseFlags = 0x100  // NR: no route matched
	FlagRequestTooLarge     ResponseFlags = 0x1000 // a request body over its limit (413)

	FlagDownstreamReset ResponseFlags = 0x10000  // DC: the client went away mid-request
	FlagBadRequest      ResponseFlags = 0x20000  // DPE: the request was refused by the parser or a limit
	FlagLocalResponse   ResponseFlags = 0x40000  // a direct_response or redirect route answered
	FlagRetryOverflow   ResponseFlags = 0x80000  // a retry was wanted but the retry budget was spent
	FlagUpgradeRefused  ResponseFlags = 0x100000 // the route refuses the protocol upgrade asked for (403)
)

// The protocols of RequestInfo.Protocol.
const (
	ProtocolHTTP1 = config.ProtocolHTTP1 // HTTP/1.0 and HTTP/1.1
	ProtocolHTTP2 = config.ProtocolHTTP2
)

// failureFlags are the flags that make MOSN's %response_flag% "true".
const failureFlags = ^(FlagLocalResponse)

// RequestInfo is what the engine records about one request — or, for a
// tcp_proxy listener, one session: complete at its end, when the proxy's
// observers (an access log, histograms) read it. Byte slices point into
// the connection's buffers and are valid only during that call.
type RequestInfo struct {
	Listener string
	// Protocol is the downstream request's protocol in MOSN's names
	// (ProtocolHTTP1, ProtocolHTTP2: what %protocol% writes), Scheme its
	// scheme ("http", "https"); both "" for a TCP session.
	Protocol, Scheme string
	// Start is the arrival of the request's first byte (a session's
	// accept); Duration runs from it to the last byte of the answer written
	// (or the request's failure, or the session's close).
	Start    time.Time
	Duration time.Duration
	// Request is the parsed head; nil if the head could not be read, and
	// for a TCP session. HeadBytes is its size as read.
	Request   *http1.Request
	HeadBytes int
	// Downstream is the client's IP ("" for unix sockets); Remote and Local
	// are the downstream connection's addresses, ConnID its number in the
	// process.
	Downstream    string
	Remote, Local net.Addr
	ConnID        uint64
	Cluster       string
	// Upstream is the host that answered (the last one tried), nil if none;
	// UpstreamConnID and UpstreamLocal are the connection to it.
	Upstream       *cluster.Host
	UpstreamConnID uint64
	UpstreamLocal  net.Addr
	// UpstreamConnect is the time spent connecting to Upstream (0 when a
	// pooled connection carried the request); UpstreamResponse runs from
	// the request's head sent to the response's head received.
	UpstreamConnect  time.Duration
	UpstreamResponse time.Duration
	// RequestSent and ResponseReceived are when (after Start) the request
	// head last went upstream and the response head came back; 0 if never.
	RequestSent, ResponseReceived time.Duration
	Attempts                      int // upstream connections tried
	Retries                       int // times a retry policy sent the request again
	// BytesReceived and BytesSent are the request and response body bytes
	// (decoded, without chunk framing); a session's bytes each way.
	BytesReceived, BytesSent int64
	Status                   int
	Flags                    ResponseFlags

	resp  *http1.Response // the upstream's answer, if one was forwarded
	route *routeAction    // its response header operations
}

// ResponseHeader returns the value of the response field name (any case)
// as the client got it, with the route's response header operations
// applied; ok is false if there was none or no upstream answer.
func (info *RequestInfo) ResponseHeader(name string) (value []byte, ok bool) {
	if info.resp == nil {
		return nil, false
	}
	name = strings.ToLower(name)
	if info.route != nil {
		if v, touched, present := info.route.respOps.final(name, info.resp.Headers); touched {
			return v, present
		}
	}
	return headerValue(info.resp.Headers, name)
}

// RequestHeader returns the first value of the request field name (any
// case) as the client sent it.
func (info *RequestInfo) RequestHeader(name string) ([]byte, bool) {
	if info.Request == nil {
		return nil, false
	}
	return headerValue(info.Request.Headers, strings.ToLower(name))
}

// headerValue finds the first field named name (lower case) in any case.
func headerValue(hs []http1.Header, name string) ([]byte, bool) {
	for _, h := range hs {
		if http1.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return nil, false
}
