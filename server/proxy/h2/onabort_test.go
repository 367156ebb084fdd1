package h2

import (
	"sort"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// OnAbort's callback runs when the peer resets the stream, at once for a
// stream already aborted, and not once cancelled.
func TestOnAbort(t *testing.T) {
	called := make(chan string, 8)
	watching := make(chan struct{}, 1)
	addr, _ := serveH2(t, Config{StreamWindow: 65535, ConnWindow: 65535}, func(st *Stream) {
		path := field(st.Header(), ":path")
		if path == "/cancelled" {
			st.OnAbort(func() { called <- "cancelled" })
			st.OnAbort(nil)
		} else {
			st.OnAbort(func() { called <- "reset" })
		}
		watching <- struct{}{}
		<-st.Aborted()
		st.OnAbort(func() { called <- "late " + path })
	})
	c := openClient(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/reset", []string{"late /reset", "reset"}},
		{"/cancelled", []string{"late /cancelled"}},
	} {
		if !c.Reserve() {
			t.Fatal("no stream")
		}
		st, err := c.OpenStream(request("GET", tc.path), true, false)
		if err != nil {
			t.Fatal(err)
		}
		<-watching
		st.Reset(http2.ErrCodeCancel)
		var got []string
		for range tc.want {
			select {
			case s := <-called:
				got = append(got, s)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: callbacks %q, want %q", tc.path, got, tc.want)
			}
		}
		sort.Strings(got)
		// The late one ran after the abort, so any other would have too.
		select {
		case s := <-called:
			got = append(got, s)
		default:
		}
		if len(got) != len(tc.want) || got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1] {
			t.Fatalf("%s: callbacks %q, want %q", tc.path, got, tc.want)
		}
	}
}
