package http1

import (
	"bytes"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

// decodeAll feeds in to a decoder in pieces of step bytes; it returns the
// data, the trailers, how many bytes of in the body took, and the error.
func decodeAll(in []byte, step int) (data, trailers []byte, used int, err error) {
	d := &ChunkedDecoder{}
	for used < len(in) && !d.Done() {
		end := min(len(in), used+step)
		piece := in[used:end]
		for len(piece) > 0 && !d.Done() {
			got, n, err := d.Next(piece)
			data = append(data, got...)
			used += n
			piece = piece[n:]
			if err != nil {
				return data, nil, used, err
			}
			if n == 0 {
				break
			}
		}
	}
	if !d.Done() {
		return data, nil, used, io.ErrUnexpectedEOF
	}
	return data, d.Trailers(), used, nil
}

func TestChunkedDecodesAtEverySplit(t *testing.T) {
	body := "5;name=val;q=\"x y\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 42\r\nContent-Length: 9\r\nConnection: x\r\n\r\n"
	in := []byte(body + "GET /next")
	for step := 1; step <= len(in); step++ {
		data, tr, used, err := decodeAll(in, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if string(data) != "helloabcdefghijklmnopqrstuvwxyz" || used != len(body) {
			t.Fatalf("step %d: data %q used %d", step, data, used)
		}
		if string(tr) != "X-Sum: 42\r\n" {
			t.Fatalf("step %d: trailers %q (framing and hop-by-hop fields must go)", step, tr)
		}
	}
}

func TestChunkedRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not hex":             "zz\r\nhello\r\n0\r\n\r\n",
		"empty size":          "\r\nhello\r\n0\r\n\r\n",
		"negative":            "-5\r\nhello\r\n0\r\n\r\n",
		"0x prefix":           "0x5\r\nhello\r\n0\r\n\r\n",
		"overflow":            "1000000000000000\r\nx\r\n0\r\n\r\n",
		"huge":                "ffffffffffffffffffff\r\n",
		"missing data CRLF":   "5\r\nhelloX\r\n0\r\n\r\n",
		"data LF only":        "5\r\nhello\n0\r\n\r\n",
		"bare LF after size":  "5\nhello\r\n0\r\n\r\n",
		"bare CR after size":  "5\rhello\r\n0\r\n\r\n",
		"bare LF in ext":      "5;a\nhello\r\n0\r\n\r\n",
		"CTL in ext":          "5;a\x01\r\nhello\r\n0\r\n\r\n",
		"space inside size":   "5 5\r\nhello\r\n0\r\n\r\n",
		"bare LF at the end":  "5\r\nhello\r\n0\r\n\n",
		"bare LF in trailer":  "0\r\nX: y\n\r\n",
		"bad trailer":         "0\r\nX y: z\r\n\r\n",
		"folded trailer":      "0\r\nX: y\r\n z\r\n\r\n",
		"CR without LF (end)": "0\r\n\rX",
	} {
		for _, step := range []int{1, len(in)} {
			if _, _, _, err := decodeAll([]byte(in), step); statusOf(err) != 400 {
				t.Errorf("%s (step %d): %v, want a 400 error", name, step, err)
			}
		}
	}
	d := &ChunkedDecoder{Status: 502}
	if _, _, err := d.Next([]byte("g\r\n")); statusOf(err) != 502 {
		t.Errorf("response body error status: %v", err)
	}
	d = &ChunkedDecoder{MaxTrailer: 16}
	if _, _, err := d.Next([]byte("0\r\nX-Long: " + strings.Repeat("a", 32) + "\r\n\r\n")); statusOf(err) != 400 {
		t.Errorf("long trailer accepted: %v", err)
	}
	d = &ChunkedDecoder{}
	if _, _, err := d.Next([]byte("1;" + strings.Repeat("a", maxChunkLine+1) + "\r\n")); statusOf(err) != 400 {
		t.Errorf("long extension accepted: %v", err)
	}
}

func TestChunkHeader(t *testing.T) {
	for _, n := range []int{1, 15, 16, 255, 256, 4096, 1 << 20} {
		h := AppendChunkHeader(nil, n)
		if len(h) != ChunkHeaderLen(n) || !bytes.HasSuffix(h, []byte("\r\n")) {
			t.Fatalf("%d: %q, length %d", n, h, ChunkHeaderLen(n))
		}
	}
	d := &ChunkedDecoder{}
	d.Next([]byte("0\r\nA: b\r\n\r\n"))
	d.Reset()
	if d.Done() || len(d.Trailers()) != 0 {
		t.Fatal("Reset kept state")
	}
}

// What this decoder accepts, net/http's decodes to the same bytes, at any split.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), 3)
	f.Add([]byte("3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, step int) {
		if step <= 0 || step > len(in) {
			step = len(in) + 1
		}
		data, _, used, err := decodeAll(in, step)
		whole, _, usedWhole, errWhole := decodeAll(in, len(in)+1)
		if (err == nil) != (errWhole == nil) || !bytes.Equal(data, whole) || (err == nil && used != usedWhole) {
			t.Fatalf("split %d changed the result: %q %v vs %q %v", step, data, err, whole, errWhole)
		}
		if err != nil {
			return
		}
		got, gerr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in[:used])))
		if gerr != nil || !bytes.Equal(got, data) {
			t.Fatalf("net/http reads %q (%v), we read %q", got, gerr, data)
		}
	})
}
