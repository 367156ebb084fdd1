package histsample

import (
	"fmt"
	"strings"
)

// Bounds of what a refusal says: a peer's states may be many and their
// names long, and what is logged must stay short.
const (
	refusalsShown  = 3   // the first refusals named in the error
	refusalMaxText = 256 // bytes of each refusal's text
)

// Check returns the states of peer that are consistent histograms (see
// Validate) and, once each, series: the second state of one series (by ID)
// is refused, since adding both would count it twice. The error, nil when
// nothing was refused, says how many were refused and names the first few,
// each cut to a bounded length, so that it can be logged whatever the peer
// sent.
func Check(peer []Histogram) ([]Histogram, error) {
	ok := make([]Histogram, 0, len(peer))
	seen := make(map[string]bool, len(peer))
	var shown []string
	refused := 0
	refuse := func(msg string) {
		refused++
		if len(shown) < refusalsShown {
			shown = append(shown, bound(msg, refusalMaxText))
		}
	}
	for _, h := range peer {
		if err := h.Validate(); err != nil {
			refuse(err.Error())
			continue
		}
		if id := h.ID(); seen[id] {
			refuse(h.Describe() + ": the series is given twice")
			continue
		} else {
			seen[id] = true
		}
		ok = append(ok, h)
	}
	if refused == 0 {
		return ok, nil
	}
	msg := strings.Join(shown, "; ")
	if more := refused - len(shown); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return ok, fmt.Errorf("histsample: %d histogram states refused: %s", refused, msg)
}

// bound cuts s to at most n bytes (on a rune boundary), marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && (s[cut]&0xc0) == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
