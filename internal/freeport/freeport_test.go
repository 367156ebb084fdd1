package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortIsBindableAndBelowTheEphemeralRange(t *testing.T) {
	start := ephemeralStart()
	for i := 0; i < 20; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if start-1-lowest >= 1000 && (p < lowest || p >= start) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, start)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d given out but not bindable: %v", p, err)
		}
		l.Close()
	}
}

func TestPortSkipsATakenOne(t *testing.T) {
	// A port held by a listener is never returned while it is held.
	held := map[int]net.Listener{}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := 0; i < 50; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := held[p]; dup {
			t.Fatalf("port %d returned while it is held", p)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		held[p] = l
	}
}
