package http1

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// describe renders a parsed Request or Response (or their ref twins) field
// by field, every byte slice as its position in buf (or nil), so that two
// parses compare equal only if they set the same fields to the same bytes
// of the same buffer.
func describe(v reflect.Value, buf []byte) string {
	base := reflect.ValueOf(buf).Pointer()
	var sb strings.Builder
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch {
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
			if v.IsNil() {
				sb.WriteString("nil")
			} else {
				fmt.Fprintf(&sb, "@%d+%d", int(v.Pointer()-base), v.Len())
			}
		case v.Kind() == reflect.Slice:
			fmt.Fprintf(&sb, "[%d:", v.Len())
			for i := range v.Len() {
				walk(v.Index(i))
				sb.WriteByte(' ')
			}
			sb.WriteByte(']')
		case v.Kind() == reflect.Struct:
			sb.WriteByte('{')
			for i := range v.NumField() {
				fmt.Fprintf(&sb, "%s=", v.Type().Field(i).Name)
				walk(v.Field(i))
				sb.WriteByte(' ')
			}
			sb.WriteByte('}')
		case v.Kind() == reflect.Bool:
			fmt.Fprint(&sb, v.Bool())
		default:
			fmt.Fprint(&sb, v.Int())
		}
	}
	walk(v)
	return sb.String()
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	e, ok := err.(*Error)
	if !ok {
		return "not an *Error: " + err.Error()
	}
	return e.Error()
}

var connNames = [][]byte{[]byte("x-a"), []byte("Keep-Alive"), []byte("upgrade"), []byte("close"), []byte("X-B")}

// checkSame parses b with both parsers, as the proxy does (SkipEmptyLines,
// HeadEnd, then the parse of the head) and as the raw bytes, and fails on
// any difference: error status and reason, every field (also after an
// error: the access log reads what was parsed), ConnectionOption.
func checkSame(t *testing.T, b []byte, maxHeaders int, splits []int) {
	t.Helper()
	skip := SkipEmptyLines(b)
	end, next := HeadEnd(b[skip:], 0)
	rend, rnext := refHeadEnd(b[skip:], 0)
	if end != rend || next != rnext {
		t.Fatalf("HeadEnd %q: %d,%d, reference %d,%d", b, end, next, rend, rnext)
	}
	heads := [][]byte{b}
	if end >= 0 {
		heads = append(heads, b[skip:skip+end])
	}
	for _, h := range heads {
		var r Request
		var rr refRequest
		sameParse(t, "ParseRequest", h, maxHeaders, &r, &rr, ParseRequest(h, &r, maxHeaders), refParseRequest(h, &rr, maxHeaders))
		var p Response
		var rp refResponse
		sameParse(t, "ParseResponse", h, maxHeaders, &p, &rp, ParseResponse(h, &p, maxHeaders), refParseResponse(h, &rp, maxHeaders))
	}
	// Resuming the search for the end after every split, as readHead does.
	for _, split := range splits {
		split = min(split, len(b)-skip)
		_, n1 := HeadEnd(b[skip:skip+split], 0)
		_, n2 := refHeadEnd(b[skip:skip+split], 0)
		e1, _ := HeadEnd(b[skip:], n1)
		e2, _ := refHeadEnd(b[skip:], n2)
		if n1 != n2 || e1 != e2 {
			t.Fatalf("HeadEnd %q split %d: %d,%d reference %d,%d", b, split, n1, e1, n2, e2)
		}
	}
}

type parsed interface{ ConnectionOption([]byte) bool }

// sameParse fails unless the parse of h into got and into the reference's
// want ended alike: the same error, the same fields, the same answers to
// ConnectionOption.
func sameParse(t *testing.T, what string, h []byte, max int, got, want parsed, err, werr error) {
	t.Helper()
	if errText(err) != errText(werr) {
		t.Fatalf("%s %q (max %d): %s, reference %s", what, h, max, errText(err), errText(werr))
	}
	if d, wd := describe(reflect.ValueOf(got).Elem(), h), describe(reflect.ValueOf(want).Elem(), h); d != wd {
		t.Fatalf("%s %q (%s):\n%s\nreference\n%s", what, h, errText(err), d, wd)
	}
	for _, n := range connNames {
		if got.ConnectionOption(n) != want.ConnectionOption(n) {
			t.Fatalf("%s %q: ConnectionOption(%s) differs", what, h, n)
		}
	}
}

// Pieces a head generator draws from: the usual, and every kind of wrong
// the parser refuses (bytes it must not let through, misplaced whitespace,
// bad versions, conflicting framing).
var (
	genMethods  = []string{"GET", "POST", "PUT", "OPTIONS", "CONNECT", "get", "M-SEARCH", "", "G ET", "GE\x00T", "GET\t", "GÉT", "{}"}
	genTargets  = []string{"/", "/a/b?c=d", "*", "http://h/p", "HTTPS://h:1", "http://a?q", "http://u@h/", "h:443", "[::1]:8080", "/a b", "/\x7f", "/\x80é", "", "/\t", "http://", "ftp://x/"}
	genVersions = []string{"HTTP/1.1", "HTTP/1.0", "HTTP/1.9", "HTTP/2.0", "HTTP/1.", "http/1.1", "HTTP/1.1 ", "HTTP/1.10", "HTTP/11", "HTTP/0.9", "HTTP/1.x"}
	genStatus   = []string{"HTTP/1.1 200 OK", "HTTP/1.1 200", "HTTP/1.1 200 ", "HTTP/1.0 204 No Content", "HTTP/1.1 099 x", "HTTP/1.1 100 Continue",
		"HTTP/1.1 2000 OK", "HTTP/2.0 200 OK", "HTTP/1.1 200 O\x7fK", "HTTP/1.1 200\tOK", "HTTP/1.1  200", "HTTP/1.1 abc", "HTTP/1.1 999 \x80\xff",
		"HTTP/1.1 200 a reason phrase\twith a tab", "HTTP/1.2 301 Moved", "HTTP/1.1 20x OK", "SSH-2.0-OpenSSH"}
	genNames = []string{"Host", "host", "HOST", "Content-Length", "content-length", "Transfer-Encoding", "transfer-encoding", "Connection",
		"Expect", "Upgrade", "Keep-Alive", "TE", "Trailer", "X-A", "X-B", "User-Agent", "Accept", "Cookie", "X A", "Host ", "",
		" Host", "\tX", "X\x00", "X\x7f", "Hos", "Content-Lengths", "é", "X:Y", "Proxy-Connection", "sec-ch-ua"}
	genValues = []string{"a", "", " ", " a ", "\ta\t", "5", "05", "5, 5", "5,6", " 5 ,5,", ",", "-1", "+1", "99999999999999999999", "123456789012345678",
		"1234567890123456789", "chunked", "Chunked", "gzip, chunked", "chunked, gzip", "chunked,chunked", "foo;x=1, chunked", ", chunked ,",
		"close", "keep-alive", "keep-alive, Upgrade", "X-A, close", "Upgrade", "100-continue", "100-Continue", "x\ty", "a\x7fb", "a\x00",
		"é", "a\rb", "websocket", "example.com:8080", "a/b", "[::1]", "text/html,application/xhtml+xml;q=0.9",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "0123456\t89abcdef", "0123456789abcde\x7f", "\x7f0123456789",
		"01234567\x01", "abcdefgh\x80\x81\x82\x83\x84\x85\x86\x87\x88", "a b c d e f g h i j k l m n o p q r s t u v w x y z  "}
	genColons = []string{": ", ":", ":\t", " :", "::", "\t:", ":  "}
	genEnds   = []string{"\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n", "", "\n\r", " \r\n"}
)

func allSplits(n int) []int {
	s := make([]int, n+1)
	for i := range s {
		s[i] = i
	}
	return s
}

func pick(rng *rand.Rand, s []string) string { return s[rng.IntN(len(s))] }

// genHead builds a request or response head, mostly well formed, with a
// mistake or two; some of them are then mutated byte by byte.
func genHead(rng *rand.Rand) []byte {
	var sb strings.Builder
	clean := rng.IntN(2) == 0 // only well-formed pieces, a Host, no mutation
	ends := genEnds[:1]
	if !clean && rng.IntN(4) == 0 {
		ends = genEnds
	}
	if rng.IntN(5) == 0 {
		sb.WriteString(pick(rng, []string{"\r\n", "\n", "\r\n\n", "\r"}))
	}
	if rng.IntN(3) == 0 {
		sb.WriteString(pick(rng, genStatus))
	} else {
		sep := " "
		if rng.IntN(10) == 0 {
			sep = pick(rng, []string{"", "  ", "\t", " \r "})
		}
		sb.WriteString(pick(rng, genMethods[:4]))
		if rng.IntN(4) == 0 {
			sb.Reset()
			sb.WriteString(pick(rng, genMethods))
		}
		sb.WriteString(sep)
		sb.WriteString(pick(rng, genTargets))
		sb.WriteString(sep)
		sb.WriteString(pick(rng, genVersions))
	}
	if clean {
		sb.Reset()
		if rng.IntN(3) == 0 {
			sb.WriteString(pick(rng, genStatus[:6]))
		} else {
			sb.WriteString(pick(rng, genMethods[:3]) + " " + pick(rng, genTargets[:6]) + " " + pick(rng, genVersions[:3]) + "\r\nHost: h")
		}
	}
	sb.WriteString(pick(rng, ends))
	for range rng.IntN(9) {
		names, colons, values := genNames[:18], genColons[:1], genValues[:40]
		if clean {
			names, values = genNames[7:18], genValues[:4]
			if rng.IntN(3) == 0 {
				names = genNames[12:18]
				values = genValues
			}
		}
		if !clean && rng.IntN(4) == 0 {
			names = genNames
		}
		if !clean && rng.IntN(6) == 0 {
			colons = genColons
		}
		if !clean && rng.IntN(3) == 0 {
			values = genValues
		}
		sb.WriteString(pick(rng, names))
		sb.WriteString(pick(rng, colons))
		sb.WriteString(pick(rng, values))
		sb.WriteString(pick(rng, ends))
		if rng.IntN(40) == 0 {
			sb.WriteString(" folded\r\n")
		}
	}
	sb.WriteString(pick(rng, ends))
	if rng.IntN(8) == 0 {
		sb.WriteString(pick(rng, []string{"body", "\r\n", "GET / HTTP/1.1\r\n\r\n"}))
	}
	b := []byte(sb.String())
	if !clean && len(b) > 0 && rng.IntN(3) == 0 {
		const bytes = " \t\r\n:,\x00\x7f\x80aA1;/"
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] = bytes[rng.IntN(len(bytes))]
		}
	}
	return b
}

// TestParsersAgree compares the parser with the reference (ref_test.go, the
// parser before the single-pass rewrite) on generated heads, valid and not;
// the seed is fixed, so every run tries the same heads.
func TestParsersAgree(t *testing.T) {
	for _, s := range []string{benchCurl, benchSix, benchBrowser, benchGoResponse, benchNginxResponse} {
		for _, max := range []int{100, 3, 0} {
			checkSame(t, []byte(s), max, allSplits(len(s)))
		}
	}
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(9, 1))
	valid := 0
	for range n {
		b := genHead(rng)
		max := 100
		if rng.IntN(5) == 0 {
			max = rng.IntN(4)
		}
		checkSame(t, b, max, []int{rng.IntN(len(b) + 1), rng.IntN(len(b) + 1)})
		var r Request
		var p Response
		if skip := SkipEmptyLines(b); ParseRequest(b[skip:], &r, max) == nil || ParseResponse(b, &p, max) == nil {
			valid++
		}
	}
	// The generator must reach the success paths too, not only errors.
	if valid < n/10 {
		t.Fatalf("only %d of %d generated heads parse", valid, n)
	}
	t.Logf("%d heads, %d accepted", n, valid)
}

func FuzzParsersAgree(f *testing.F) {
	for _, s := range []string{benchCurl, benchSix, benchBrowser, benchGoResponse, benchNginxResponse,
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", "HTTP/1.1 200 \r\nContent-Length: 1, 1\r\n\r\n",
		"POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"} {
		f.Add([]byte(s), uint8(100))
	}
	f.Fuzz(func(t *testing.T, b []byte, max uint8) {
		checkSame(t, b, int(max), allSplits(len(b)))
	})
}
