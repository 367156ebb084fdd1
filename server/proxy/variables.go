package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// Variable is one of MOSN's variables (%name% in an access log format, a
// header operation's value), resolved once so that filling it per request
// looks nothing up by name.
type Variable struct {
	kind varKind
	arg  string // the header, cookie or argument name of a prefix variable (lower case for headers)
}

type varKind uint8

const (
	varStartTime varKind = iota
	varDuration
	varRequestReceived
	varResponseReceived
	varProcessTime
	varBytesSent
	varBytesReceived
	varProtocol
	varResponseCode
	varResponseFlag
	varFailureReason
	varUpstreamLocal
	varDownstreamLocal
	varDownstreamRemote
	varUpstreamHost
	varUpstreamCluster
	varConnID
	varUpstreamConnID
	varListenerName
	varListenerPort
	varTraceID
	varScheme
	varMethod
	varRequestLength
	varPath
	varPathOriginal
	varArgs
	varURI
	varRequestHeader
	varResponseHeader
	varCookie
	varArg
)

var variableKinds = map[string]varKind{
	"start_time": varStartTime, "duration": varDuration, "request_finished_duration": varDuration,
	"request_received_duration": varRequestReceived, "response_received_duration": varResponseReceived,
	"process_time_duration": varProcessTime, "bytes_sent": varBytesSent, "bytes_received": varBytesReceived,
	"protocol": varProtocol, "response_code": varResponseCode, "response_flag": varResponseFlag,
	"response_flags": varResponseFlag, "upstream_transport_failure_reason": varFailureReason,
	"upstream_local_address": varUpstreamLocal, "downstream_local_address": varDownstreamLocal,
	"downstream_remote_address": varDownstreamRemote, "upstream_host": varUpstreamHost,
	"upstream_cluster": varUpstreamCluster, "connection_id": varConnID, "upstream_connection_id": varUpstreamConnID,
	"listener_name": varListenerName, "listener_port": varListenerPort, "trace_id": varTraceID,
	"request_scheme": varScheme, "request_method": varMethod, "request_length": varRequestLength,
	"request_path": varPath, "request_path_original": varPathOriginal, "request_arg": varArgs, "request_uri": varURI,
}

var variablePrefixes = []struct {
	prefix string
	kind   varKind
}{{"request_header_", varRequestHeader}, {"response_header_", varResponseHeader}, {"cookie_", varCookie}, {"request_arg_", varArg}}

// ParseVariable resolves a MOSN variable name (without its %s), in the
// names config.KnownAccessLogVariable accepts.
func ParseVariable(name string) (Variable, error) {
	canon, ok := config.CanonicalAccessLogVariable(name)
	if !ok {
		return Variable{}, fmt.Errorf("unknown variable %%%s%%", name)
	}
	if k, ok := variableKinds[canon]; ok {
		return Variable{kind: k}, nil
	}
	for _, p := range variablePrefixes {
		if arg, ok := strings.CutPrefix(canon, p.prefix); ok && arg != "" {
			if p.kind == varRequestHeader || p.kind == varResponseHeader {
				arg = strings.ToLower(arg)
			}
			return Variable{kind: p.kind, arg: arg}, nil
		}
	}
	return Variable{}, fmt.Errorf("unknown variable %%%s%%", name)
}

// notFound is what a variable without a value writes, as MOSN's.
const notFound = "-"

// startTimeLayout is MOSN's %start_time%.
const startTimeLayout = "2006/01/02 15:04:05.000"

// AppendVariable appends v's value for this request (or session) to b:
// MOSN's rendering — durations as Go durations ("1.5ms"), %start_time% as
// 2006/01/02 15:04:05.000, %response_flag% true or false (whether anything
// failed), %upstream_transport_failure_reason% the flags in hex — and "-"
// where there is no value. HTTP variables write "-" for a TCP session.
func (info *RequestInfo) AppendVariable(b []byte, v Variable) []byte {
	switch v.kind {
	case varStartTime:
		return info.Start.AppendFormat(b, startTimeLayout)
	case varDuration:
		return append(b, info.Duration.String()...)
	case varRequestReceived:
		return append(b, info.RequestSent.String()...)
	case varResponseReceived:
		return append(b, info.ResponseReceived.String()...)
	case varProcessTime:
		// MOSN's: to the request sent, and from the response received.
		d := info.RequestSent
		if info.ResponseReceived > 0 {
			d += info.Duration - info.ResponseReceived
		}
		return append(b, d.String()...)
	case varBytesSent:
		return strconv.AppendInt(b, info.BytesSent, 10)
	case varBytesReceived:
		return strconv.AppendInt(b, info.BytesReceived, 10)
	case varProtocol:
		switch {
		case info.Request == nil:
			return append(b, notFound...)
		case info.Protocol == "":
			return append(b, ProtocolHTTP1...) // a record made without one
		}
		return append(b, info.Protocol...)
	case varResponseCode:
		return strconv.AppendInt(b, int64(info.Status), 10)
	case varResponseFlag:
		return strconv.AppendBool(b, info.Flags&failureFlags != 0)
	case varFailureReason:
		b = append(b, "0x"...)
		return strconv.AppendUint(b, uint64(info.Flags), 16)
	case varUpstreamLocal:
		return appendAddr(b, info.UpstreamLocal)
	case varDownstreamLocal:
		return appendAddr(b, info.Local)
	case varDownstreamRemote:
		return appendAddr(b, info.Remote)
	case varUpstreamHost:
		// MOSN's: the host's hostname, "-" without one.
		if info.Upstream == nil || info.Upstream.Hostname() == "" {
			return append(b, notFound...)
		}
		return append(b, info.Upstream.Hostname()...)
	case varUpstreamCluster:
		if info.Cluster == "" || info.Cluster == noClusterLabel {
			return append(b, notFound...)
		}
		return append(b, info.Cluster...)
	case varConnID:
		return appendID(b, info.ConnID)
	case varUpstreamConnID:
		return appendID(b, info.UpstreamConnID)
	case varListenerName:
		return append(b, info.Listener...)
	case varListenerPort:
		if a, ok := info.Local.(*net.TCPAddr); ok {
			return strconv.AppendInt(b, int64(a.Port), 10)
		}
		return append(b, notFound...)
	case varTraceID:
		return append(b, notFound...) // no tracer
	}
	req := info.Request
	if req == nil {
		return append(b, notFound...)
	}
	switch v.kind {
	case varScheme:
		if info.Scheme == "" {
			return append(b, "http"...)
		}
		return append(b, info.Scheme...)
	case varMethod:
		return append(b, req.Method...)
	case varRequestLength:
		return strconv.AppendInt(b, int64(info.HeadBytes)+info.BytesReceived, 10)
	case varPath:
		p := pathOf(req.Path)
		if u, err := url.PathUnescape(string(p)); err == nil {
			return append(b, u...)
		}
		return append(b, p...)
	case varPathOriginal:
		return append(b, pathOf(req.Path)...)
	case varArgs:
		return append(b, queryOf(req.Path)...)
	case varURI:
		return append(b, req.Target...)
	}
	var val []byte
	var ok bool
	switch v.kind {
	case varRequestHeader:
		val, ok = headerValue(req.Headers, v.arg)
	case varResponseHeader:
		val, ok = info.ResponseHeader(v.arg)
	case varCookie:
		val, ok = cookieValue(req, v.arg)
	case varArg:
		val, ok = argValue(queryOf(req.Path), v.arg)
	}
	if !ok {
		return append(b, notFound...)
	}
	return append(b, val...)
}

// appendAddr appends a as MOSN prints it ("127.0.0.1:80", "[::1]:80", a
// unix path), "-" for none; a TCP address without allocating.
func appendAddr(b []byte, a net.Addr) []byte {
	if t, ok := a.(*net.TCPAddr); ok && t != nil {
		ap := t.AddrPort()
		if ap.Addr().IsValid() {
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(b)
		}
	}
	if a == nil || a.String() == "" {
		return append(b, notFound...)
	}
	return append(b, a.String()...)
}

func appendID(b []byte, id uint64) []byte {
	if id == 0 {
		return append(b, notFound...)
	}
	return strconv.AppendUint(b, id, 10)
}

// queryOf is the query of a request target, without its '?'.
func queryOf(target []byte) []byte {
	for i, c := range target {
		if c == '?' {
			return target[i+1:]
		}
	}
	return nil
}

// argValue is the first value of query argument name, as sent.
func argValue(query []byte, name string) ([]byte, bool) {
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		k, val := pair, []byte(nil)
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			k, val = pair[:i], pair[i+1:]
		}
		if string(k) == name {
			return val, true
		}
	}
	return nil, false
}

// cookieValue is the value of cookie name in the request's Cookie fields.
func cookieValue(req *http1.Request, name string) ([]byte, bool) {
	for _, h := range req.Headers {
		if !http1.EqualFold(h.Name, "cookie") {
			continue
		}
		v := h.Value
		for len(v) > 0 {
			var c []byte
			if i := bytes.IndexByte(v, ';'); i >= 0 {
				c, v = v[:i], v[i+1:]
			} else {
				c, v = v, nil
			}
			c = bytes.TrimSpace(c)
			if i := bytes.IndexByte(c, '='); i >= 0 && string(c[:i]) == name {
				return c[i+1:], true
			}
		}
	}
	return nil, false
}
