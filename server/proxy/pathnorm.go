package proxy

import "bytes"

// normalisePath is the path routes match and rewrites work on, as MOSN's
// (fasthttp's URI.Path()): percent escapes decoded — except %2F, %25, %3F
// and %23, which stay encoded so that a decoded path never means another
// path or a query — then
// repeated slashes collapsed and "." and ".." segments resolved. A path
// that needs none of it is returned as it is; ok is false for one whose
// ".." climbs above the root.
func normalisePath(p []byte) (out []byte, ok bool) {
	if len(p) == 0 || p[0] != '/' ||
		(bytes.IndexByte(p, '%') < 0 && !bytes.Contains(p, []byte("//")) && !bytes.Contains(p, []byte("/."))) {
		return p, true
	}
	dec := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			if v := unhex(p[i+1])<<4 | unhex(p[i+2]); v != '/' && v != '%' && v != '?' && v != '#' {
				dec = append(dec, v)
				i += 2
				continue
			}
		}
		dec = append(dec, p[i])
	}
	out = dec[:1] // "/", resolved in place: out never outruns the reading
	rest := dec[1:]
	for len(rest) > 0 {
		seg := rest
		last := true
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			seg, rest, last = rest[:i], rest[i+1:], false
		} else {
			rest = nil
		}
		switch string(seg) {
		case "", ".":
		case "..":
			if len(out) == 1 {
				return nil, false
			}
			j := bytes.LastIndexByte(out[:len(out)-1], '/')
			out = out[:j+1]
		default:
			out = append(out, seg...)
			if !last {
				out = append(out, '/')
			}
		}
		if last {
			break
		}
	}
	return out, true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b <= 'F':
		return b - 'A' + 10
	}
	return b - 'a' + 10
}

// appendEscapedPath appends a path for a request line: the bytes a
// decoded path may hold that a request-target cannot (controls, space,
// non-ASCII) percent-encoded again; a '?' a rewrite wrote starts a query.
func appendEscapedPath(b, path []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range path {
		if c <= ' ' || c >= 0x7f {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

func needsEscape(path []byte) bool {
	for _, c := range path {
		if c <= ' ' || c >= 0x7f {
			return true
		}
	}
	return false
}
