package h2

import (
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// OnBusy's calls come in order and end with the state the connection is
// in: after many streams in a row, each started as the one before ended,
// the last call says idle. The callback takes a varying time, as a
// tracker's lock would, so that calls made each from a goroutine of its own
// would run out of order.
func TestOnBusyEndsWithTheConnectionsState(t *testing.T) {
	var mu sync.Mutex
	var told []bool
	inside := 0
	cfg := Config{OnBusy: func(busy bool) {
		mu.Lock()
		inside++
		n := inside
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		mu.Lock()
		inside--
		told = append(told, busy)
		mu.Unlock()
		if n > 1 {
			t.Error("OnBusy called while a call was still running")
		}
	}}
	addr, _ := serveH2(t, cfg, echoHandler)
	client := goClient()
	for i := 0; i < 200; i++ {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The connection is idle now; its last call must say so, and no call
	// may repeat the one before it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n, last := len(told), len(told) > 0 && told[len(told)-1]
		settled := inside == 0
		mu.Unlock()
		if settled && n > 0 && !last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last stream ended, OnBusy's last call said busy=%v (%d calls)", last, n)
		}
		time.Sleep(time.Millisecond)
	}
	// Give a late, out-of-order call the time to land, then check again:
	// a state told after the connection went idle would be a lie.
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if told[len(told)-1] {
		t.Fatalf("a late OnBusy call said busy after the connection went idle (%d calls)", len(told))
	}
	for i := 1; i < len(told); i++ {
		if told[i] == told[i-1] {
			t.Fatalf("calls %d and %d both said busy=%v: not the order of the changes", i-1, i, told[i])
		}
	}
	if told[0] {
		t.Fatal("the first call said busy: a connection counts as busy until then, so that is no change")
	}
}
