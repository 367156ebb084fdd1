package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpgradeWatchPeriod(t *testing.T) {
	with := func(v string) string {
		return strings.Replace(baseJSON, `"servers": [{`, `"upgrade_watch_period": `+v+`, "servers": [{`, 1)
	}
	c, err := Parse([]byte(baseJSON))
	if err != nil || c.UpgradeWatchPeriod == nil || c.UpgradeWatchPeriod.Duration != 5*time.Second {
		t.Fatalf("default: %+v %v", c.UpgradeWatchPeriod, err)
	}
	if c, err := Parse([]byte(with(`"0s"`))); err != nil || c.UpgradeWatchPeriod.Duration != 0 {
		t.Fatalf(`"0s" (off): %+v %v`, c.UpgradeWatchPeriod, err)
	}
	for v, msg := range map[string]string{`"-1s"`: "must be positive", `"11m"`: "must be at most 10m0s", `"soon"`: "invalid duration"} {
		if _, err := Parse([]byte(with(v))); err == nil || !strings.Contains(err.Error(), "upgrade_watch_period") || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want upgrade_watch_period: %s", v, err, msg)
		}
	}
}
