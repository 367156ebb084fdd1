package http1

import (
	"encoding/binary"
	"strings"
	"testing"
)

// The tables against the RFC 9110 definitions, byte by byte.
func TestTables(t *testing.T) {
	tchar := "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		b := byte(c)
		check := func(name, table string, want bool) {
			if got := table[c] == 1; got != want {
				t.Errorf("%s[%#02x] = %v, want %v", name, c, got, want)
			}
			if table[c] > 1 {
				t.Errorf("%s[%#02x] = %d, want 0 or 1", name, c, table[c])
			}
		}
		check("tokenTable", tokenTable, strings.IndexByte(tchar, b) >= 0)
		check("valueTable", valueTable, b == '\t' || (b >= 0x20 && b <= 0x7e) || b >= 0x80)
		check("targetTable", targetTable, (b >= 0x21 && b <= 0x7e) || b >= 0x80)
		check("hostTable", hostTable, strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]", b) >= 0)
	}
	for _, tb := range []string{tokenTable, valueTable, targetTable, hostTable} {
		if len(tb) != 256 {
			t.Fatalf("table of %d entries", len(tb))
		}
	}
}

func TestFieldKinds(t *testing.T) {
	hop := []string{"Connection", "keep-alive", "PROXY-CONNECTION", "Proxy-Authenticate", "Proxy-Authorization",
		"te", "Trailer", "Transfer-Encoding", "Upgrade"}
	for _, n := range hop {
		if !Kind([]byte(n)).HopByHop() {
			t.Errorf("%s is hop-by-hop", n)
		}
	}
	for _, n := range []string{"Host", "Content-Length", "X-Forwarded-For", "x-forwarded-proto", "Expect", "Cookie", "Tee", "Hos"} {
		if Kind([]byte(n)).HopByHop() {
			t.Errorf("%s is end-to-end", n)
		}
	}
	if Kind([]byte("HOST")) != KindHost || Kind([]byte("x-forwarded-FOR")) != KindXForwardedFor || Kind([]byte("Content-Lengths")) != KindOther {
		t.Error("misclassified")
	}
}

// invalidValueBytes and invalidTargetBytes must flag exactly the bytes
// their table refuses, whatever their neighbours: every byte value at every
// position, among fillers that would carry or borrow into it if a lane
// leaked.
func TestInvalidBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		table string
		mask  func(uint64) uint64
	}{{"invalidValueBytes", valueTable, invalidValueBytes}, {"invalidTargetBytes", targetTable, invalidTargetBytes}} {
		checkMask(t, tc.name, tc.table, tc.mask)
	}
	b := []byte("0123456789abcdef\tghijk\r\n")
	for i := range 23 {
		if got := valueEnd(b, i); got != 22 {
			t.Fatalf("valueEnd from %d: %d, want 22", i, got)
		}
		want := 16 // the tab
		if i > 16 {
			want = 22
		}
		if got := targetEnd(b, i); got != want {
			t.Fatalf("targetEnd from %d: %d, want %d", i, got, want)
		}
	}
}

func checkMask(t *testing.T, name, table string, mask func(uint64) uint64) {
	for _, fill := range []byte{0x00, 0x09, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff} {
		for pos := range 8 {
			for c := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(c)
				var want uint64
				for i, b := range w {
					if table[b] == 0 {
						want |= 0x80 << (8 * i)
					}
				}
				if got := mask(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("%s(% x): %#x, want %#x", name, w, got, want)
				}
			}
		}
	}
}

// equalFold against the definition (lower-case b, then compare), for every
// pair of bytes and strings that differ in case, length or one byte.
func TestEqualFold(t *testing.T) {
	for c := range 256 {
		for _, s := range []string{"a", "z", "-", "0", "@", "[", "`", "{", "\x7f", "\xc0", "\xe0"} {
			b := []byte{byte(c)}
			if got, want := equalFold(b, s), refLower(byte(c)) == s[0]; got != want {
				t.Fatalf("equalFold(%q, %q) = %v, want %v", b, s, got, want)
			}
		}
	}
	for _, tc := range []struct {
		b, s string
		want bool
	}{{"Keep-Alive", "keep-alive", true}, {"KEEP-ALIVE", "keep-alive", true}, {"keep\ralive", "keep-alive", false},
		{"keep-aliv", "keep-alive", false}, {"100-Continue", "100-continue", true}, {"100-continuE", "100-continue", true}} {
		if got := equalFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("equalFold(%q, %q) = %v", tc.b, tc.s, got)
		}
	}
}
