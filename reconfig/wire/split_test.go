package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

type splitMsg struct {
	Items []string `json:"items"`
	More  bool     `json:"more,omitempty"`
}

func TestSplit(t *testing.T) {
	items := []string{"a", "bb", strings.Repeat("x", 100), "ccc", "d", "ee", "f"}
	enc := func(lo, hi int, more bool) ([]byte, error) {
		return json.Marshal(splitMsg{Items: items[lo:hi], More: more})
	}
	for _, tc := range []struct {
		limit   int
		last    bool
		parts   int
		dropped []int
	}{
		{1000, false, 1, nil},
		{1000, true, 1, nil},
		{40, false, 4, []int{2}},
		{40, true, 4, []int{2}},
	} {
		parts, dropped := Split(len(items), tc.limit, tc.last, enc)
		if len(parts) != tc.parts || !reflect.DeepEqual(dropped, tc.dropped) {
			t.Errorf("limit %d: %d parts, dropped %v; want %d, %v", tc.limit, len(parts), dropped, tc.parts, tc.dropped)
			continue
		}
		var got []string
		for i, p := range parts {
			var m splitMsg
			if err := json.Unmarshal(p, &m); err != nil || len(p) > tc.limit {
				t.Fatalf("part %d: %d bytes, %v", i, len(p), err)
			}
			if want := i < len(parts)-1 || tc.last; m.More != want {
				t.Errorf("limit %d last %v: part %d more=%v", tc.limit, tc.last, i, m.More)
			}
			got = append(got, m.Items...)
		}
		want := append(append([]string(nil), items[:2]...), items[3:]...)
		if tc.dropped == nil {
			want = items
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("limit %d: parts hold %v", tc.limit, got)
		}
	}
	// No items: one part.
	if parts, _ := Split(0, 100, false, enc); len(parts) != 1 || string(parts[0]) != `{"items":[]}` {
		t.Errorf("no items: %q", parts)
	}
}
