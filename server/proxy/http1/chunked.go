package http1

import "strconv"

// Chunked framing limits.
const (
	maxChunkSizeDigits = 15   // 2^60-1: no overflow, and no real chunk is near it
	maxChunkLine       = 4096 // a chunk-size line with its extensions
)

// chunked decoder states.
const (
	csSize        = iota // chunk-size hex digits
	csSizeWS             // whitespace after the digits: ';' or CR must follow
	csExt                // chunk extensions, up to CR
	csSizeLF             // the LF after the size line's CR
	csData               // chunk data
	csDataCR             // the CR after chunk data
	csDataLF             // the LF after chunk data
	csTrailer            // start of a trailer line, or the final CRLF
	csTrailerLine        // inside a trailer field line, up to CR
	csTrailerLF          // the LF after a trailer line's CR
	csEndLF              // the LF of the final empty line
	csDone
)

// ChunkedDecoder decodes a chunked body (RFC 9112 §7.1) as its bytes
// arrive, refusing everything the grammar does not allow: a size that is
// not hex or too long, a bare LF or CR, chunk data not followed by CRLF,
// invalid bytes in extensions or trailer fields. Extensions are dropped;
// trailer fields are kept (validated, hop-by-hop ones and framing fields
// dropped) for the proxy to pass on. The zero value is ready for a body.
type ChunkedDecoder struct {
	state    uint8
	digits   int
	lineLen  int
	size     int64 // data left in the current chunk
	line     []byte
	trailers []byte // validated "name: value\r\n" lines
	// MaxTrailer bounds the trailer section; 0 means 64 KiB.
	MaxTrailer int
	// Status is set on the errors: 400 for a request body, 502 for a response.
	Status int
}

// Reset readies d for the next body, keeping its buffers and settings.
func (d *ChunkedDecoder) Reset() {
	*d = ChunkedDecoder{line: d.line[:0], trailers: d.trailers[:0], MaxTrailer: d.MaxTrailer, Status: d.Status}
}

// Done reports whether the body ended, trailers included.
func (d *ChunkedDecoder) Done() bool { return d.state == csDone }

// Trailers returns the trailer fields, "name: value\r\n" each; valid until Reset.
func (d *ChunkedDecoder) Trailers() []byte { return d.trailers }

func (d *ChunkedDecoder) status() int {
	if d.Status == 0 {
		return StatusBadRequest
	}
	return d.Status
}

func (d *ChunkedDecoder) fail(format string, a ...any) *Error {
	return errorf(d.status(), format, a...)
}

// Next decodes from in up to the end of the next piece of chunk data, or up
// to the end of in. It returns that data (a slice of in, empty if in held
// only framing) and how many bytes of in it consumed, the data included.
// After the body's end it consumes nothing: what follows is the next message.
func (d *ChunkedDecoder) Next(in []byte) (data []byte, consumed int, err error) {
	i := 0
	for i < len(in) {
		c := in[i]
		switch d.state {
		case csSize:
			v, ok := hexValue(c)
			if ok {
				if d.digits == maxChunkSizeDigits {
					return nil, i, d.fail("chunk size has more than %d hex digits", maxChunkSizeDigits)
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
				i++
				continue
			}
			if d.digits == 0 {
				return nil, i, d.fail("invalid chunk size: byte %#02x", c)
			}
			d.state = csSizeWS
		case csSizeWS:
			switch c {
			case ' ', '\t':
				i++
			case ';':
				d.state = csExt
			case '\r':
				d.state = csSizeLF
				i++
			case '\n':
				return nil, i, d.fail("bare LF after a chunk size")
			default:
				return nil, i, d.fail("invalid chunk size: byte %#02x", c)
			}
		case csExt:
			switch {
			case c == '\r':
				d.state = csSizeLF
			case c == '\n':
				return nil, i, d.fail("bare LF in a chunk extension")
			case valueTable[c] == 0:
				return nil, i, d.fail("invalid byte %#02x in a chunk extension", c)
			}
			d.lineLen++
			if d.lineLen > maxChunkLine {
				return nil, i, d.fail("chunk extensions longer than %d bytes", maxChunkLine)
			}
			i++
		case csSizeLF:
			if c != '\n' {
				return nil, i, d.fail("CR without LF after a chunk size")
			}
			i++
			d.lineLen, d.digits = 0, 0
			if d.size == 0 {
				d.state = csTrailer
			} else {
				d.state = csData
			}
		case csData:
			n := int64(len(in) - i)
			if n > d.size {
				n = d.size
			}
			d.size -= n
			if d.size == 0 {
				d.state = csDataCR
			}
			return in[i : i+int(n)], i + int(n), nil
		case csDataCR:
			if c != '\r' {
				return nil, i, d.fail("chunk data not followed by CRLF")
			}
			d.state = csDataLF
			i++
		case csDataLF:
			if c != '\n' {
				return nil, i, d.fail("chunk data not followed by CRLF")
			}
			d.state = csSize
			i++
		case csTrailer:
			switch c {
			case '\r':
				d.state = csEndLF
				i++
			case '\n':
				return nil, i, d.fail("bare LF at the end of a chunked body")
			default:
				d.state = csTrailerLine
				d.line = d.line[:0]
			}
		case csTrailerLine:
			if c == '\r' {
				d.state = csTrailerLF
				i++
				continue
			}
			if c == '\n' {
				return nil, i, d.fail("bare LF in a trailer field")
			}
			d.lineLen++
			if d.lineLen > d.maxTrailer() {
				return nil, i, d.fail("trailer section longer than %d bytes", d.maxTrailer())
			}
			d.line = append(d.line, c)
			i++
		case csTrailerLF:
			if c != '\n' {
				return nil, i, d.fail("CR without LF in a trailer field")
			}
			i++
			if err := d.addTrailer(); err != nil {
				return nil, i, err
			}
			d.state = csTrailer
		case csEndLF:
			if c != '\n' {
				return nil, i, d.fail("CR without LF at the end of a chunked body")
			}
			d.state = csDone
			return nil, i + 1, nil
		case csDone:
			return nil, i, nil
		}
	}
	return nil, i, nil
}

func (d *ChunkedDecoder) maxTrailer() int {
	if d.MaxTrailer > 0 {
		return d.MaxTrailer
	}
	return 64 << 10
}

// addTrailer validates the trailer field line in d.line and keeps it unless
// it must not be passed on.
func (d *ChunkedDecoder) addTrailer() error {
	if d.line[0] == ' ' || d.line[0] == '\t' {
		return d.fail("obsolete line folding in the trailer section")
	}
	h, err := parseField(d.line, d.status())
	if err != nil {
		return err
	}
	switch k := fieldKind(h.Name); {
	case k.HopByHop(), k == KindContentLength, k == KindHost:
		return nil
	}
	d.trailers = append(d.trailers, h.Name...)
	d.trailers = append(d.trailers, ": "...)
	d.trailers = append(d.trailers, h.Value...)
	d.trailers = append(d.trailers, "\r\n"...)
	return nil
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// AppendChunkHeader appends the size line of a chunk of n > 0 bytes.
func AppendChunkHeader(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, '\r', '\n')
}

// ChunkHeaderLen is the length of AppendChunkHeader's output for n.
func ChunkHeaderLen(n int) int {
	l := 3 // one digit and CRLF
	for n >= 16 {
		n >>= 4
		l++
	}
	return l
}
