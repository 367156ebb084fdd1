// Package http1 parses and frames HTTP/1.x messages for a proxy. A head is
// parsed in place: every field of a parsed Request or Response is a slice of
// the buffer the head was read into, and parsing allocates nothing (the
// header slice is reused from one message to the next). It is strict in the
// way RFC 9112 asks of a server and an intermediary: what could be read two
// ways by two parsers is refused, with the status a server answers it with.
package http1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Error is a message that cannot be accepted.
type Error struct {
	// Status is what a server answers a request with (400, 431, 501, 505);
	// for an upstream response it is 502.
	Status int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Reason) }

func errorf(status int, format string, a ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, a...)}
}

// Status codes the parser answers with.
const (
	StatusBadRequest           = 400
	StatusHeaderFieldsTooLarge = 431
	StatusNotImplemented       = 501
	StatusBadGateway           = 502
	StatusVersionNotSupported  = 505
)

// ErrIncomplete is returned for a head that needs more bytes.
var ErrIncomplete = errors.New("http1: incomplete head")

// Header is one field line: its name as sent and its value without the
// surrounding whitespace.
type Header struct {
	Name, Value []byte
}

// SkipEmptyLines returns how many bytes of empty lines (CRLF or LF) start b:
// a server ignores them before a request-line (RFC 9112 §2.2).
func SkipEmptyLines(b []byte) int {
	i := 0
	for i < len(b) {
		switch {
		case b[i] == '\n':
			i++
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			i += 2
		default:
			return i
		}
	}
	return i
}

// HeadEnd finds the end of a head in b, which must not start with an empty
// line (see SkipEmptyLines): it returns the length of the head including the
// empty line that ends it, or -1. from is where to resume looking: 0 at
// first, then the returned next for the same, grown, b.
func HeadEnd(b []byte, from int) (end, next int) {
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

// Request is a parsed request head.
type Request struct {
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
func (r *Request) Reset() {
	*r = Request{Headers: r.Headers[:0], ContentLength: -1}
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// ConnectionOption reports whether the Connection header names name: such a
// field is hop-by-hop (RFC 9110 §7.6.1).
func (r *Request) ConnectionOption(name []byte) bool {
	return connectionOption(r.Headers, r.connFirst, r.connCount, name)
}

// IsMethod reports whether the method is m.
func (r *Request) IsMethod(m string) bool { return string(r.Method) == m }

// ParseRequest parses the complete head in head (as delimited by HeadEnd,
// after SkipEmptyLines) into r, at most maxHeaders field lines.
func ParseRequest(head []byte, r *Request, maxHeaders int) error {
	r.Reset()
	rest, ok := r.scanRequestLine(head)
	var err error
	if ok {
		err = r.parseTarget()
	} else {
		// Not the common shape: the exact checks, and their error.
		var line []byte
		if line, rest, err = nextLine(head, StatusBadRequest); err != nil {
			return err
		}
		err = r.parseRequestLine(line)
	}
	if err != nil {
		return err
	}
	f := framing{status: StatusBadRequest, cl: -1}
	if r.Headers, err = f.fields(rest, r.Headers, maxHeaders, r); err != nil {
		return err
	}
	hostCount := f.hostCount
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

// scanRequestLine reads, in one pass, a request-line of the common shape:
// a token method, one SP, a target of allowed bytes, one SP, HTTP/1.x and
// CRLF or LF. It sets Method, Target and Minor and returns the rest of the
// head; for any other line it returns false and parseRequestLine decides.
// What it accepts, nextLine and parseRequestLine accept with the same result.
func (r *Request) scanRequestLine(b []byte) (rest []byte, ok bool) {
	i := 0
	for i < len(b) && tokenTable[b[i]] != 0 {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return nil, false
	}
	t := i + 1
	j := targetEnd(b, t)
	if j == t || j >= len(b) || b[j] != ' ' {
		return nil, false
	}
	v := b[j+1:]
	if len(v) < 9 || string(v[:7]) != "HTTP/1." || !isDigit(v[7]) {
		return nil, false
	}
	n := lineEnd(v, 8)
	if n < 0 {
		return nil, false
	}
	r.Method, r.Target, r.Minor = b[:i], b[t:j], min(int(v[7]-'0'), 1)
	return v[n:], true
}

// lineEnd returns the length of b up to and including the CRLF or LF at i,
// or -1 if there is none there.
func lineEnd(b []byte, i int) int {
	if i < len(b) {
		switch b[i] {
		case '\n':
			return i + 1
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return i + 2
			}
		}
	}
	return -1
}

func (r *Request) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errorf(StatusBadRequest, "malformed request line")
	}
	r.Method = line[:sp]
	if !isToken(r.Method) {
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
	minor, err := parseVersion(rest[sp+1:], StatusBadRequest)
	if err != nil {
		return err
	}
	r.Minor = minor
	return r.parseTarget()
}

// parseVersion reads "HTTP/1.x". Another major version is 505; minor
// versions above 1 are read as 1 (RFC 9110 §2.5).
func parseVersion(v []byte, status int) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
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

func (r *Request) parseTarget() error {
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
		if !validHost(t) {
			return errorf(StatusBadRequest, "invalid CONNECT authority")
		}
		r.Path = t // authority-form
	default:
		rest, ok := cutSchemeHTTP(t)
		if !ok {
			return errorf(StatusBadRequest, "invalid request target")
		}
		end := len(rest)
		if i := bytes.IndexAny(rest, "/?"); i >= 0 {
			end = i
		}
		authority := rest[:end]
		if len(authority) == 0 || !validHost(authority) {
			return errorf(StatusBadRequest, "invalid authority in the request target")
		}
		r.Host = authority
		// Empty or starting with '?' for "http://a" and "http://a?q": the
		// path is then "/" (RFC 9112 §3.2.1), which the proxy writes itself.
		r.Path = rest[end:]
	}
	return nil
}

// cutSchemeHTTP strips "http://" or "https://", case-insensitively.
func cutSchemeHTTP(t []byte) ([]byte, bool) {
	for _, s := range [...]string{"http://", "https://"} {
		if len(t) >= len(s) && equalFold(t[:len(s)], s) {
			return t[len(s):], true
		}
	}
	return nil, false
}

// Response is a parsed response head.
type Response struct {
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
func (r *Response) Reset() {
	*r = Response{Headers: r.Headers[:0], ContentLength: -1}
}

// ConnectionOption reports whether the Connection header names name.
func (r *Response) ConnectionOption(name []byte) bool {
	return connectionOption(r.Headers, r.connFirst, r.connCount, name)
}

// ParseResponse parses the complete response head in head into r, at most
// maxHeaders field lines. Every error has Status 502.
func ParseResponse(head []byte, r *Response, maxHeaders int) error {
	r.Reset()
	rest, ok := r.scanStatusLine(head)
	var err error
	if !ok {
		if rest, err = r.parseStatusLine(head); err != nil {
			return err
		}
	}
	f := framing{status: StatusBadGateway, cl: -1}
	if r.Headers, err = f.fields(rest, r.Headers, maxHeaders, nil); err != nil {
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

// scanStatusLine reads, in one pass, a status-line of the common shape
// (HTTP/1.x, a status of at least 100, a reason of allowed bytes or none)
// into r and returns the rest of the head; for any other line it returns
// false and parseStatusLine decides, as it would have for this one.
func (r *Response) scanStatusLine(b []byte) (rest []byte, ok bool) {
	if len(b) < 13 || string(b[:7]) != "HTTP/1." || !isDigit(b[7]) || b[8] != ' ' ||
		b[9] < '1' || b[9] > '9' || !isDigit(b[10]) || !isDigit(b[11]) {
		return nil, false
	}
	n := lineEnd(b, 12)
	var reason []byte
	if n < 0 {
		if b[12] != ' ' {
			return nil, false
		}
		j := valueEnd(b, 13)
		if n = lineEnd(b, j); n < 0 {
			return nil, false
		}
		reason = b[13:j]
	}
	r.Minor = min(int(b[7]-'0'), 1)
	r.Status = int(b[9]-'0')*100 + int(b[10]-'0')*10 + int(b[11]-'0')
	r.Reason = reason
	return b[n:], true
}

// parseStatusLine checks the status-line exactly, with the error for each
// way it can be wrong.
func (r *Response) parseStatusLine(head []byte) (rest []byte, err error) {
	line, rest, err := nextLine(head, StatusBadGateway)
	if err != nil {
		return nil, err
	}
	// HTTP/1.1 SP 3DIGIT SP reason; the reason (and its SP) may be missing.
	if len(line) < 12 || line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') {
		return nil, errorf(StatusBadGateway, "malformed status line %q", truncate(line))
	}
	if r.Minor, err = parseVersion(line[:8], StatusBadGateway); err != nil {
		return nil, err
	}
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 {
		return nil, errorf(StatusBadGateway, "status %d", r.Status)
	}
	if len(line) > 12 {
		r.Reason = line[13:]
		for _, c := range r.Reason {
			if valueTable[c] == 0 {
				return nil, errorf(StatusBadGateway, "invalid byte %#02x in the reason phrase", c)
			}
		}
	}
	return rest, nil
}

// framing gathers, field line by field line, what requests and responses
// share: the body's framing (Content-Length, Transfer-Encoding) and the
// Connection header. Its errors carry status.
type framing struct {
	status               int
	cl                   int64
	clSeen               bool
	te                   transferCoding
	connFirst, connCount int
	close, keepAlive     bool
	upgrade              bool // Connection lists "upgrade"
	hostCount            int  // Host field lines, for a request
}

// fields parses the field lines of rest, up to the empty line that must end
// it, appending them to hs (at most max in all) and taking in the shared ones
// and, for a request (r not nil), Host, Expect and Upgrade. It returns hs as
// grown so far, after an error too.
func (f *framing) fields(rest []byte, hs []Header, max int, r *Request) ([]Header, error) {
	for {
		var h Header
		n := -1
		if len(hs) < max {
			var colon, end int
			if colon, end, n = scanField(rest); n > 0 {
				h = Header{Name: rest[:colon], Value: trimOWS(rest[colon+1 : end])}
			}
		}
		if n > 0 {
			rest = rest[n:]
		} else if n = lineEnd(rest, 0); n > 0 {
			rest = rest[n:] // the empty line that ends the head
			break
		} else {
			// A line of another shape (or none): the exact checks, and
			// their error.
			line, next, err := nextLine(rest, f.status)
			if err != nil {
				return hs, err
			}
			rest = next
			if len(line) == 0 {
				break
			}
			if len(hs) == max {
				status := f.status
				if status == StatusBadRequest {
					status = StatusHeaderFieldsTooLarge
				}
				return hs, errorf(status, "more than %d header fields", max)
			}
			if h, err = parseField(line, f.status); err != nil {
				return hs, err
			}
		}
		idx := len(hs)
		hs = append(hs, h)
		switch k := fieldKind(h.Name); k {
		case kindContentLength:
			n, ok := parseDecimal(h.Value) // the usual single length
			if !ok {
				var err error
				if n, err = parseContentLength(h.Value, f.status); err != nil {
					return hs, err
				}
			}
			if f.clSeen && n != f.cl {
				return hs, errorf(f.status, "conflicting Content-Length values")
			}
			f.clSeen, f.cl = true, n
		case kindTransferEncoding:
			if err := f.te.add(h.Value); err != nil {
				if f.status != StatusBadRequest {
					err.Status = f.status
				}
				return hs, err
			}
		case kindConnection:
			if f.connCount == 0 {
				f.connFirst = idx
			}
			f.connCount++
			for v := h.Value; len(v) > 0; {
				var tok []byte
				if tok, v = nextElement(v); len(tok) == 0 {
					continue
				}
				switch {
				case equalFold(tok, "close"):
					f.close = true
				case equalFold(tok, "keep-alive"):
					f.keepAlive = true
				case equalFold(tok, "upgrade"):
					f.upgrade = true
				}
			}
		case kindHost:
			if r == nil {
				break
			}
			f.hostCount++
			if f.hostCount > 1 {
				return hs, errorf(StatusBadRequest, "more than one Host header")
			}
			if !validHost(h.Value) {
				return hs, errorf(StatusBadRequest, "invalid Host %q", h.Value)
			}
			if r.Host == nil { // an absolute-form authority was set first
				r.Host = h.Value
			}
		case kindExpect:
			if r != nil && equalFold(h.Value, "100-continue") {
				r.Expect100 = true
			}
		case kindUpgrade:
			if r != nil {
				r.Upgrade = h.Value
			}
		}
	}
	if len(rest) != 0 {
		return hs, errorf(f.status, "bytes after the end of the head")
	}
	return hs, nil
}

// scanField reads, in one pass, a field line of the common shape at the
// start of b: a token name, the colon, a value of allowed bytes, CRLF or LF.
// It returns where the colon is, where the value ends (before the line end)
// and the length of the line, or n <= 0 for any other line (the empty one
// too), which nextLine and parseField then judge. What it accepts, they
// accept with the same result.
func scanField(b []byte) (colon, end, n int) {
	i := 0
	for i+4 <= len(b) && tokenTable[b[i]]&tokenTable[b[i+1]]&tokenTable[b[i+2]]&tokenTable[b[i+3]] != 0 {
		i += 4
	}
	for i < len(b) && tokenTable[b[i]] != 0 {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ':' {
		return 0, 0, -1
	}
	j := valueEnd(b, i+1)
	return i, j, lineEnd(b, j)
}

// valueEnd returns the index of the first byte from i on that a field value
// cannot hold (valueTable), or len(b); eight bytes at a time.
func valueEnd(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := invalidValueBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if valueTable[b[i]] == 0 {
			return i
		}
	}
	return i
}

// targetEnd is valueEnd for targetTable.
func targetEnd(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := invalidTargetBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if targetTable[b[i]] == 0 {
			return i
		}
	}
	return i
}

const ones, highs, lows = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f

// invalidTargetBytes has the high bit of each byte of x that targetTable
// refuses (a CTL, SP or DEL) set, and no other bit.
func invalidTargetBytes(x uint64) uint64 {
	// Up to 0x20: neither the high bit nor a carry out of the low seven
	// bits when 0x5f is added.
	return ^((x&lows+(0x80-0x21)*ones)|x)&highs | zeroBytes(x^(0x7f*ones))
}

// zeroBytes has the high bit of each zero byte of x set, and no other bit.
func zeroBytes(x uint64) uint64 { return ^((x&lows + lows) | x) & highs }

// invalidValueBytes has the high bit of each byte of x that valueTable
// refuses (a CTL other than HTAB, or DEL) set, and no other bit. Each byte
// is tested on its own: nothing carries from one byte into the next.
func invalidValueBytes(x uint64) uint64 {
	// Below 0x20: neither the high bit nor a carry out of the low seven
	// bits when 0x60 is added.
	bad := ^((x&lows + (0x80-0x20)*ones) | x) & highs
	if bad != 0 {
		bad &^= zeroBytes(x ^ ('\t' * ones)) // the tabs among them are allowed
	}
	return bad | zeroBytes(x^(0x7f*ones)) // DEL
}

// BodyAllowed reports whether a response with this status to a request
// with this method has a body at all (RFC 9112 §6.3).
func BodyAllowed(head bool, status int) bool {
	return !head && status >= 200 && status != 204 && status != 304
}

// transferCoding accumulates the Transfer-Encoding field lines.
type transferCoding struct {
	present     bool
	chunkedLast bool // the final coding so far is chunked
	other       bool // a coding other than chunked appears
}

func (t *transferCoding) add(v []byte) *Error {
	t.present = true
	if !t.chunkedLast && equalFold(v, "chunked") { // the usual single coding
		t.chunkedLast = true
		return nil
	}
	n := 0
	var err *Error
	forEachToken(v, func(tok []byte) {
		n++
		switch {
		case err != nil:
		case equalFold(tok, "chunked"):
			if t.chunkedLast {
				err = errorf(StatusBadRequest, "chunked applied twice")
			}
			t.chunkedLast = true
		default:
			if t.chunkedLast {
				err = errorf(StatusBadRequest, "a transfer coding after chunked")
			}
			if !isToken(tok) {
				// Parameters (a ';') or garbage: nothing we implement.
				err = errorf(StatusNotImplemented, "unsupported transfer coding %q", truncate(tok))
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

// nextLine splits off the first line of b, without its CRLF or LF. A CR
// anywhere but before the LF is refused (RFC 9112 §2.2), and so is an
// obsolete line folding (a line that starts with whitespace).
func nextLine(b []byte, status int) (line, rest []byte, err error) {
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

// parseField splits "name: value": a token name, the colon right after it
// (a space before the colon is refused, RFC 9112 §5.1), a value of allowed
// bytes with optional whitespace around it.
func parseField(line []byte, status int) (Header, error) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return Header{}, errorf(status, "field line without a name and a colon: %q", truncate(line))
	}
	name := line[:i]
	if !isToken(name) {
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			return Header{}, errorf(status, "whitespace between the field name %q and the colon", truncate(bytes.TrimRight(name, " \t")))
		}
		return Header{}, errorf(status, "invalid field name %q", truncate(name))
	}
	v := line[i+1:]
	for _, c := range v {
		if valueTable[c] == 0 {
			return Header{}, errorf(status, "invalid byte %#02x in the value of %s", c, truncate(name))
		}
	}
	return Header{Name: name, Value: trimOWS(v)}, nil
}

func parseContentLength(v []byte, status int) (int64, error) {
	// "5, 5" is one length sent twice (RFC 9110 §8.6).
	var n int64 = -1
	var err error
	elems := 0
	forEachToken(v, func(tok []byte) {
		elems++
		if err != nil {
			return
		}
		m, ok := parseDecimal(tok)
		switch {
		case !ok:
			err = errorf(status, "invalid Content-Length %q", truncate(v))
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

// parseDecimal reads 1 to 18 digits: every length that fits an int64 with room.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func connectionOption(hs []Header, first, count int, name []byte) bool {
	found := false
	for i := first; count > 0 && i < len(hs) && !found; i++ {
		if fieldKind(hs[i].Name) != kindConnection {
			continue
		}
		count--
		forEachToken(hs[i].Value, func(tok []byte) {
			if !found && equalFoldBytes(tok, name) {
				found = true
			}
		})
	}
	return found
}

// nextElement splits the first element of a comma-separated list off v,
// trimmed of whitespace (empty for an empty element), as forEachToken does.
func nextElement(v []byte) (elem, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// forEachToken calls fn with each non-empty element of a comma-separated
// list, trimmed of whitespace.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			elem, v = v, nil
		}
		if elem = trimOWS(elem); len(elem) > 0 {
			fn(elem)
		}
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isToken(b []byte) bool {
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

// validHost accepts a uri-host with an optional port: reg-name, IPv4 or a
// bracketed IP literal, as RFC 3986 spells them. No userinfo, path or
// whitespace.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if hostTable[c] == 0 {
			return false
		}
	}
	return true
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// lower folds an ASCII letter.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares b with the lower-case ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		// Equal, or b's is the upper case of s's letter: c|0x20 is a
		// lower-case letter only for that letter in either case.
		if c := b[i]; c != s[i] && (c|0x20 != s[i] || s[i] < 'a' || s[i] > 'z') {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
