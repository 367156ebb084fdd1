package systemd

import (
	"strconv"
	"testing"
)

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// env is a fake environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }
