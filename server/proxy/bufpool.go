package proxy

import "sync"

// Buffer size classes: 4 KiB, then ×4 up to 16 MiB.
const (
	minBufShift  = 12
	bufClassStep = 2
	numBufClass  = 7 // 4K 16K 64K 256K 1M 4M 16M
)

// buffer is a pooled byte slice; the pointer lets the pool store it
// without an allocation.
type buffer struct {
	b     []byte
	class int
}

// bufPool hands out buffers by size class. Connections take one when bytes
// arrive and give it back at the request boundary, so that an idle
// connection holds none; a pool's contents go back to the heap (and the
// operating system) at the garbage collector's pace.
type bufPool struct {
	classes [numBufClass]sync.Pool
}

func classOf(n int) int {
	for c := range numBufClass {
		if n <= 1<<(minBufShift+bufClassStep*c) {
			return c
		}
	}
	return -1
}

// get returns a buffer of at least n bytes (len = cap).
func (p *bufPool) get(n int) *buffer {
	c := classOf(n)
	if c < 0 {
		return &buffer{b: make([]byte, n), class: -1}
	}
	if v := p.classes[c].Get(); v != nil {
		return v.(*buffer)
	}
	return &buffer{b: make([]byte, 1<<(minBufShift+bufClassStep*c)), class: c}
}

// put gives b back; nil is ignored.
func (p *bufPool) put(b *buffer) {
	if b == nil || b.class < 0 {
		return
	}
	p.classes[b.class].Put(b)
}
