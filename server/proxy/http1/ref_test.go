package http1

// The parser as it was before the single-pass rewrite (commit fe28219),
// kept only as the reference that equiv_test.go compares the parser with
// and bench_test.go measures it against. Identifiers carry a ref prefix;
// Error, errorf, Header, the Kind constants and the byte tables are shared.

import "bytes"

func refHeadEnd(b []byte, from int) (end, next int) {
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		p := i + j
		switch {
		case p >= 1 && b[p-1] == '\n':
			return p + 1, p + 1
		case p >= 2 && b[p-1] == '\r' && b[p-2] == '\n':
			return p + 1, p + 1
		}
		i = p + 1
	}
}

// refRequest is a parsed request head.
type refRequest struct {
	Method []byte
	// Target is the request-target as sent; Path is its path and query in
	// origin-form: for an absolute-form target what follows the authority
	// (empty or starting with '?' when the path is empty), "*" for
	// OPTIONS *, the authority for CONNECT.
	Target, Path []byte
	Minor        int // HTTP/1.Minor: 0 or 1
	Headers      []Header
	// Host is the Host header, or the authority of an absolute-form target
	// (which takes precedence, RFC 9112 §3.2.2).
	Host []byte
	// ContentLength is the body's length; -1 when the request has none or is
	// chunked.
	ContentLength int64
	Chunked       bool
	// Close: the client asked for the connection to close after the answer
	// (Connection: close, or HTTP/1.0 without keep-alive).
	Close bool
	// KeepAlive: an HTTP/1.0 client asked to keep the connection.
	KeepAlive bool
	// Expect100: an HTTP/1.1 client waits for 100 Continue before its body.
	Expect100 bool
	// Upgrade is the Upgrade header's value (nil if none); UpgradeAsked
	// says that Connection lists "upgrade" too, as a real upgrade needs.
	Upgrade      []byte
	UpgradeAsked bool

	connFirst, connCount int // the Connection field lines, for ConnectionOption
}

// Reset empties r for the next message, keeping the header slice's capacity.
func (r *refRequest) Reset() {
	*r = refRequest{Headers: r.Headers[:0], ContentLength: -1}
}

// HasBody reports whether a body follows the head.
func (r *refRequest) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// ConnectionOption reports whether the Connection header names name: such a
// field is hop-by-hop (RFC 9110 §7.6.1).
func (r *refRequest) ConnectionOption(name []byte) bool {
	return refConnectionOption(r.Headers, r.connFirst, r.connCount, name)
}

// IsMethod reports whether the method is m.
func (r *refRequest) IsMethod(m string) bool { return string(r.Method) == m }

// refParseRequest parses the complete head in head (as delimited by refHeadEnd,
// after SkipEmptyLines) into r, at most maxHeaders field lines.
func refParseRequest(head []byte, r *refRequest, maxHeaders int) error {
	r.Reset()
	line, rest, err := refNextLine(head, StatusBadRequest)
	if err != nil {
		return err
	}
	if err := r.parseRequestLine(line); err != nil {
		return err
	}
	hostCount := 0
	f := refFraming{status: StatusBadRequest, cl: -1}
	err = f.fields(rest, &r.Headers, maxHeaders, func(k FieldKind, h Header) *Error {
		switch k {
		case kindHost:
			hostCount++
			if hostCount > 1 {
				return errorf(StatusBadRequest, "more than one Host header")
			}
			if !refValidHost(h.Value) {
				return errorf(StatusBadRequest, "invalid Host %q", h.Value)
			}
			if r.Host == nil { // an absolute-form authority was set first
				r.Host = h.Value
			}
		case kindExpect:
			if refEqualFold(h.Value, "100-continue") {
				r.Expect100 = true
			}
		case kindUpgrade:
			r.Upgrade = h.Value
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.ContentLength, r.connFirst, r.connCount = f.cl, f.connFirst, f.connCount
	r.Close, r.KeepAlive, r.UpgradeAsked = f.close, f.keepAlive, f.upgrade
	te, clSeen := f.te, f.clSeen
	if r.Minor == 0 {
		r.Expect100 = false // RFC 9110 §10.1.1: ignored in HTTP/1.0
		r.Close = r.Close || !r.KeepAlive
		if te.present {
			return errorf(StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
	} else {
		r.KeepAlive = false
		if hostCount == 0 || len(r.Host) == 0 {
			return errorf(StatusBadRequest, "missing Host header")
		}
	}
	if te.present {
		if clSeen {
			return errorf(StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if !te.chunkedLast {
			return errorf(StatusBadRequest, "Transfer-Encoding without chunked as the final coding")
		}
		if te.other {
			return errorf(StatusNotImplemented, "unsupported transfer coding")
		}
		r.Chunked = true
	}
	if !clSeen {
		r.ContentLength = -1
	}
	return nil
}

func (r *refRequest) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errorf(StatusBadRequest, "malformed request line")
	}
	r.Method = line[:sp]
	if !refIsToken(r.Method) {
		return errorf(StatusBadRequest, "invalid method")
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return errorf(StatusBadRequest, "malformed request line")
	}
	r.Target = rest[:sp]
	for _, c := range r.Target {
		if targetTable[c] == 0 {
			return errorf(StatusBadRequest, "invalid byte %#02x in the request target", c)
		}
	}
	minor, err := refParseVersion(rest[sp+1:], StatusBadRequest)
	if err != nil {
		return err
	}
	r.Minor = minor
	return r.parseTarget()
}

// refParseVersion reads "HTTP/1.x". Another major version is 505; minor
// versions above 1 are read as 1 (RFC 9110 §2.5).
func refParseVersion(v []byte, status int) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !refIsDigit(v[5]) || !refIsDigit(v[7]) {
		return 0, errorf(status, "malformed HTTP version %q", v)
	}
	if v[5] != '1' {
		if status == StatusBadRequest {
			status = StatusVersionNotSupported
		}
		return 0, errorf(status, "HTTP version %s not supported", v)
	}
	return min(int(v[7]-'0'), 1), nil
}

func (r *refRequest) parseTarget() error {
	t := r.Target
	switch {
	case t[0] == '/':
		r.Path = t
	case string(t) == "*":
		if !r.IsMethod("OPTIONS") {
			return errorf(StatusBadRequest, "asterisk target with %s", r.Method)
		}
		r.Path = t
	case r.IsMethod("CONNECT"):
		if !refValidHost(t) {
			return errorf(StatusBadRequest, "invalid CONNECT authority")
		}
		r.Path = t // authority-form
	default:
		rest, ok := refCutSchemeHTTP(t)
		if !ok {
			return errorf(StatusBadRequest, "invalid request target")
		}
		end := len(rest)
		if i := bytes.IndexAny(rest, "/?"); i >= 0 {
			end = i
		}
		authority := rest[:end]
		if len(authority) == 0 || !refValidHost(authority) {
			return errorf(StatusBadRequest, "invalid authority in the request target")
		}
		r.Host = authority
		// Empty or starting with '?' for "http://a" and "http://a?q": the
		// path is then "/" (RFC 9112 §3.2.1), which the proxy writes itself.
		r.Path = rest[end:]
	}
	return nil
}

// refCutSchemeHTTP strips "http://" or "https://", case-insensitively.
func refCutSchemeHTTP(t []byte) ([]byte, bool) {
	for _, s := range [...]string{"http://", "https://"} {
		if len(t) >= len(s) && refEqualFold(t[:len(s)], s) {
			return t[len(s):], true
		}
	}
	return nil, false
}

// refResponse is a parsed response head.
type refResponse struct {
	Minor   int
	Status  int
	Reason  []byte
	Headers []Header
	// ContentLength is the body's length, -1 if not given.
	ContentLength int64
	Chunked       bool
	// CloseDelimited: the body, if the status and method allow one, ends
	// when the upstream closes (no length, or a transfer coding other than
	// chunked last).
	CloseDelimited bool
	// Close: the connection cannot carry another request after this one
	// (Connection: close, HTTP/1.0 without keep-alive, a transfer coding
	// other than chunked last, or Content-Length beside Transfer-Encoding).
	// A response without any length is CloseDelimited but not Close: whether
	// it has a body at all depends on its status and the request's method.
	Close bool

	connFirst, connCount int
}

// Reset empties r for the next message, keeping the header slice's capacity.
func (r *refResponse) Reset() {
	*r = refResponse{Headers: r.Headers[:0], ContentLength: -1}
}

// ConnectionOption reports whether the Connection header names name.
func (r *refResponse) ConnectionOption(name []byte) bool {
	return refConnectionOption(r.Headers, r.connFirst, r.connCount, name)
}

// refParseResponse parses the complete response head in head into r, at most
// maxHeaders field lines. Every error has Status 502.
func refParseResponse(head []byte, r *refResponse, maxHeaders int) error {
	r.Reset()
	line, rest, err := refNextLine(head, StatusBadGateway)
	if err != nil {
		return err
	}
	// HTTP/1.1 SP 3DIGIT SP reason; the reason (and its SP) may be missing.
	if len(line) < 12 || line[8] != ' ' || !refIsDigit(line[9]) || !refIsDigit(line[10]) || !refIsDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') {
		return errorf(StatusBadGateway, "malformed status line %q", refTruncate(line))
	}
	if r.Minor, err = refParseVersion(line[:8], StatusBadGateway); err != nil {
		return err
	}
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 {
		return errorf(StatusBadGateway, "status %d", r.Status)
	}
	if len(line) > 12 {
		r.Reason = line[13:]
		for _, c := range r.Reason {
			if valueTable[c] == 0 {
				return errorf(StatusBadGateway, "invalid byte %#02x in the reason phrase", c)
			}
		}
	}
	f := refFraming{status: StatusBadGateway, cl: -1}
	if err := f.fields(rest, &r.Headers, maxHeaders, nil); err != nil {
		return err
	}
	r.ContentLength, r.connFirst, r.connCount, r.Close = f.cl, f.connFirst, f.connCount, f.close
	te, clSeen, keepAlive := f.te, f.clSeen, f.keepAlive
	if r.Minor == 0 && !keepAlive {
		r.Close = true
	}
	switch {
	case te.present:
		// Transfer-Encoding overrides Content-Length, and such a message
		// ends the connection (RFC 9112 §6.3).
		if clSeen {
			r.Close = true
		}
		r.ContentLength = -1
		if te.chunkedLast && !te.other {
			r.Chunked = true
		} else {
			r.CloseDelimited, r.Close = true, true
		}
	case !clSeen:
		r.ContentLength = -1
		r.CloseDelimited = true
	}
	return nil
}

// refFraming gathers, field line by field line, what requests and responses
// share: the body's refFraming (Content-Length, Transfer-Encoding) and the
// Connection header. Its errors carry status.
type refFraming struct {
	status               int
	cl                   int64
	clSeen               bool
	te                   refTransferCoding
	connFirst, connCount int
	close, keepAlive     bool
	upgrade              bool // Connection lists "upgrade"
}

// fields parses the field lines of rest, up to the empty line that must end
// it, into *hs (at most max), taking in the shared ones and passing the
// others to other (if not nil) with their kind.
func (f *refFraming) fields(rest []byte, hs *[]Header, max int, other func(FieldKind, Header) *Error) error {
	for {
		line, next, err := refNextLine(rest, f.status)
		if err != nil {
			return err
		}
		rest = next
		if len(line) == 0 {
			break
		}
		if len(*hs) == max {
			status := f.status
			if status == StatusBadRequest {
				status = StatusHeaderFieldsTooLarge
			}
			return errorf(status, "more than %d header fields", max)
		}
		h, err := refParseField(line, f.status)
		if err != nil {
			return err
		}
		idx := len(*hs)
		*hs = append(*hs, h)
		switch k := refFieldKind(h.Name); k {
		case kindContentLength:
			n, err := refParseContentLength(h.Value, f.status)
			if err != nil {
				return err
			}
			if f.clSeen && n != f.cl {
				return errorf(f.status, "conflicting Content-Length values")
			}
			f.clSeen, f.cl = true, n
		case kindTransferEncoding:
			if err := f.te.add(h.Value); err != nil {
				if f.status != StatusBadRequest {
					err.Status = f.status
				}
				return err
			}
		case kindConnection:
			if f.connCount == 0 {
				f.connFirst = idx
			}
			f.connCount++
			refForEachToken(h.Value, func(tok []byte) {
				switch {
				case refEqualFold(tok, "close"):
					f.close = true
				case refEqualFold(tok, "keep-alive"):
					f.keepAlive = true
				case refEqualFold(tok, "upgrade"):
					f.upgrade = true
				}
			})
		default:
			if other != nil {
				if err := other(k, h); err != nil {
					return err
				}
			}
		}
	}
	if len(rest) != 0 {
		return errorf(f.status, "bytes after the end of the head")
	}
	return nil
}

type refTransferCoding struct {
	present     bool
	chunkedLast bool
	other       bool
}

func (t *refTransferCoding) add(v []byte) *Error {
	t.present = true
	n := 0
	var err *Error
	refForEachToken(v, func(tok []byte) {
		n++
		switch {
		case err != nil:
		case refEqualFold(tok, "chunked"):
			if t.chunkedLast {
				err = errorf(StatusBadRequest, "chunked applied twice")
			}
			t.chunkedLast = true
		default:
			if t.chunkedLast {
				err = errorf(StatusBadRequest, "a transfer coding after chunked")
			}
			if !refIsToken(tok) {
				// Parameters (a ';') or garbage: nothing we implement.
				err = errorf(StatusNotImplemented, "unsupported transfer coding %q", refTruncate(tok))
			}
			t.other = true
		}
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return errorf(StatusBadRequest, "empty Transfer-Encoding")
	}
	return nil
}

// refNextLine splits off the first line of b, without its CRLF or LF. A CR
// anywhere but before the LF is refused (RFC 9112 §2.2), and so is an
// obsolete line folding (a line that starts with whitespace).
func refNextLine(b []byte, status int) (line, rest []byte, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, errorf(status, "head without its final line end")
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, errorf(status, "bare CR in the head")
	}
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return nil, nil, errorf(status, "obsolete line folding or whitespace before a field")
	}
	return line, rest, nil
}

// refParseField splits "name: value": a token name, the colon right after it
// (a space before the colon is refused, RFC 9112 §5.1), a value of allowed
// bytes with optional whitespace around it.
func refParseField(line []byte, status int) (Header, error) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return Header{}, errorf(status, "field line without a name and a colon: %q", refTruncate(line))
	}
	name := line[:i]
	if !refIsToken(name) {
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			return Header{}, errorf(status, "whitespace between the field name %q and the colon", refTruncate(bytes.TrimRight(name, " \t")))
		}
		return Header{}, errorf(status, "invalid field name %q", refTruncate(name))
	}
	v := line[i+1:]
	for _, c := range v {
		if valueTable[c] == 0 {
			return Header{}, errorf(status, "invalid byte %#02x in the value of %s", c, refTruncate(name))
		}
	}
	return Header{Name: name, Value: refTrimOWS(v)}, nil
}

func refParseContentLength(v []byte, status int) (int64, error) {
	// "5, 5" is one length sent twice (RFC 9110 §8.6).
	var n int64 = -1
	var err error
	elems := 0
	refForEachToken(v, func(tok []byte) {
		elems++
		if err != nil {
			return
		}
		m, ok := refParseDecimal(tok)
		switch {
		case !ok:
			err = errorf(status, "invalid Content-Length %q", refTruncate(v))
		case n >= 0 && m != n:
			err = errorf(status, "conflicting Content-Length values")
		default:
			n = m
		}
	})
	if err != nil {
		return 0, err
	}
	if elems == 0 {
		return 0, errorf(status, "empty Content-Length")
	}
	return n, nil
}

// refParseDecimal reads 1 to 18 digits: every length that fits an int64 with room.
func refParseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !refIsDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func refConnectionOption(hs []Header, first, count int, name []byte) bool {
	found := false
	for i := first; count > 0 && i < len(hs) && !found; i++ {
		if refFieldKind(hs[i].Name) != kindConnection {
			continue
		}
		count--
		refForEachToken(hs[i].Value, func(tok []byte) {
			if !found && refEqualFoldBytes(tok, name) {
				found = true
			}
		})
	}
	return found
}

// refForEachToken calls fn with each non-empty element of a comma-separated
// list, trimmed of whitespace.
func refForEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			elem, v = v, nil
		}
		if elem = refTrimOWS(elem); len(elem) > 0 {
			fn(elem)
		}
	}
}

func refTrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func refIsDigit(c byte) bool { return '0' <= c && c <= '9' }

func refIsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if tokenTable[c] == 0 {
			return false
		}
	}
	return true
}

// refValidHost accepts a uri-host with an optional port: reg-name, IPv4 or a
// bracketed IP literal, as RFC 3986 spells them. No userinfo, path or
// whitespace.
func refValidHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', refIsDigit(c):
		default:
			switch c {
			case '-', '.', '_', '~', '%', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '[', ']':
			default:
				return false
			}
		}
	}
	return true
}

func refTruncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// refLower folds an ASCII letter.
func refLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// refEqualFold compares b with the refLower-case ASCII string s, ignoring case.
func refEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if refLower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func refEqualFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if refLower(a[i]) != refLower(b[i]) {
			return false
		}
	}
	return true
}
func refFieldKind(name []byte) FieldKind {
	// By length first: most names are rejected on it alone.
	switch len(name) {
	case 2:
		if refEqualFold(name, "te") {
			return KindTE
		}
	case 4:
		if refEqualFold(name, "host") {
			return KindHost
		}
	case 6:
		if refEqualFold(name, "expect") {
			return KindExpect
		}
	case 7:
		switch {
		case refEqualFold(name, "upgrade"):
			return KindUpgrade
		case refEqualFold(name, "trailer"):
			return KindTrailer
		}
	case 10:
		switch {
		case refEqualFold(name, "connection"):
			return KindConnection
		case refEqualFold(name, "keep-alive"):
			return KindKeepAlive
		}
	case 14:
		if refEqualFold(name, "content-length") {
			return KindContentLength
		}
	case 15:
		if refEqualFold(name, "x-forwarded-for") {
			return KindXForwardedFor
		}
	case 16:
		if refEqualFold(name, "proxy-connection") {
			return KindProxyConnection
		}
	case 17:
		switch {
		case refEqualFold(name, "transfer-encoding"):
			return KindTransferEncoding
		case refEqualFold(name, "x-forwarded-proto"):
			return KindXForwardedProto
		}
	case 18:
		if refEqualFold(name, "proxy-authenticate") {
			return KindProxyAuthenticate
		}
	case 19:
		if refEqualFold(name, "proxy-authorization") {
			return KindProxyAuthorization
		}
	}
	return KindOther
}

// HopByHop reports whether a field of this kind describes one connection,
// not the message, and so is never forwarded (RFC 9110 §7.6.1, and the
// legacy Keep-Alive, Proxy-Connection and proxy authentication fields).
// Trailer goes too: the proxy frames the body anew. Fields that the
