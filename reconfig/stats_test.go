package reconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
	"github.com/mosnlite/mosnlite/service/stats/sample"
)

// testHistogram is a consistent histogram state of n observations of 2 ms.
func testHistogram(name string, n uint64, labels ...string) histsample.Histogram {
	return histsample.Histogram{
		Name: name, Labels: labels,
		Bounds: []float64{0.001, 0.01}, Counts: []uint64{0, n, 0}, Count: n, Sum: 0.002 * float64(n),
		Schema: 3, ZeroThreshold: 1e-9, Native: []histsample.Bucket{{Index: -71, Count: n}},
	}
}

// followAll runs a Follower on the new end of a drain stream and returns
// what it received, once the old end said bye.
func followAll(t *testing.T, f *Follower) func() []Counts {
	t.Helper()
	var mu sync.Mutex
	var got []Counts
	done := make(chan error, 1)
	go func() {
		done <- f.Follow(testCtx(t, testWait), FollowHooks{Counts: func(c Counts) {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
		}})
	}()
	return func() []Counts {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatalf("Follow: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// TestSendCountersSplitsWhatNoFrameHolds: a push larger than one frame goes
// in parts, each within the limit, all but the last marked More; together
// they are the push, in order. A series too large for any frame is left out
// with a warning, and the rest still goes.
func TestSendCountersSplitsWhatNoFrameHolds(t *testing.T) {
	oldEnd, newEnd := unixPair(t)
	log, hook := testLog()
	const limit = 4 << 10
	succ := NewSuccessor(oldEnd, 1, nil, false, StreamConfig{Log: log, MaxCountsFrame: limit})
	defer succ.Close()
	result := followAll(t, NewFollower(newEnd, 2, nil, quietLog()))

	var push Counts
	for i := 0; i < 40; i++ {
		push.Counters = append(push.Counters, sample.Sample{Name: "cx_total", Labels: []string{"listener", fmt.Sprint(i)}, Kind: sample.KindCounter, Value: float64(i + 1)})
	}
	for i := 0; i < 60; i++ {
		push.Histograms = append(push.Histograms, testHistogram("rq_seconds", uint64(i+1), "listener", fmt.Sprint(i)))
	}
	huge := testHistogram("huge_seconds", 1, "listener", strings.Repeat("x", 2*limit))
	withHuge := push
	withHuge.Histograms = append(append([]histsample.Histogram(nil), push.Histograms...), huge)
	if whole, _ := json.Marshal(push); len(whole) < 3*limit {
		t.Fatalf("the push is only %d bytes: it tests nothing", len(whole))
	}
	if err := succ.SendCounters(withHuge); err != nil {
		t.Fatal(err)
	}
	if err := succ.SendCounters(Counts{}); err != nil { // a second push, empty
		t.Fatal(err)
	}
	if err := succ.Bye(); err != nil {
		t.Fatal(err)
	}
	parts := result()
	if len(parts) < 5 {
		t.Fatalf("%d parts", len(parts))
	}
	var joined Counts
	for i, p := range parts[:len(parts)-1] {
		b, _ := json.Marshal(p)
		if len(b) > limit {
			t.Errorf("part %d is %d bytes, over %d", i, len(b), limit)
		}
		if p.More != (i < len(parts)-2) {
			t.Errorf("part %d of %d: more=%v", i, len(parts)-1, p.More)
		}
		joined.Counters = append(joined.Counters, p.Counters...)
		joined.Histograms = append(joined.Histograms, p.Histograms...)
	}
	if fmt.Sprint(joined.Counters) != fmt.Sprint(push.Counters) || fmt.Sprint(joined.Histograms) != fmt.Sprint(push.Histograms) {
		t.Errorf("the parts are not the push:\n%+v\n%+v", joined, push)
	}
	if last := parts[len(parts)-1]; last.More || len(last.Counters)+len(last.Histograms) != 0 {
		t.Errorf("the empty push arrived as %+v", last)
	}
	warned := false
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "too large") {
			warned = true
			if s, _ := e.Data["series"].(string); !strings.HasPrefix(s, "huge_seconds") || len(s) > 256 {
				t.Errorf("the warning names %q", s)
			}
		}
	}
	if !warned {
		t.Error("no warning for the series left out")
	}
}

// TestManifestTooLargeIsRefusedBeforeSending: a manifest over its frame
// limit is refused with ErrManifestTooLarge before a byte goes out, and the
// export may send a smaller one: the handoff goes through.
func TestManifestTooLargeIsRefusedBeforeSending(t *testing.T) {
	dir := shortDir(t)
	u, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ln := tcpListener(t)
	big := testHistogram("rq_seconds", 1, "listener", strings.Repeat("x", maxManifestSize))
	firstErr := make(chan error, 1)
	srv, err := u.TakeOver(ServerConfig{
		Log: quietLog(), HandoffTimeout: testWait,
		Export: func(send func(Manifest, []int) error) error {
			f := dupFile(t, ln)
			defer f.Close()
			m := Manifest{
				Generation: 1,
				Entries:    []ident.Spec{{Name: "web", Kind: ident.KindServer, Network: "tcp", Address: ln.Addr().String()}},
				Histograms: []histsample.Histogram{big},
			}
			firstErr <- send(m, []int{int(f.Fd())})
			m.Histograms = nil
			return send(m, []int{int(f.Fd())})
		},
		OnAck: func(s *Successor) { s.Close() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	up, err := Begin(testCtx(t, testWait), dir, quietLog())
	if err != nil {
		t.Fatalf("the handoff failed: %v", err)
	}
	defer up.Fail(errors.New("test over"))
	if err := <-firstErr; !errors.Is(err, ErrManifestTooLarge) || !strings.Contains(err.Error(), "1 histograms") {
		t.Fatalf("first send: %v", err)
	}
	if m := up.Manifest(); len(m.Histograms) != 0 || len(m.Entries) != 1 {
		t.Fatalf("manifest %d histograms, %d entries", len(m.Histograms), len(m.Entries))
	}
}
