package benchkit

import (
	"fmt"
	"syscall"
)

// RaiseNoFile makes the soft RLIMIT_NOFILE at least need (up to the hard
// limit) and returns it. Setting it explicitly also makes children inherit it:
// Go restores the original soft limit in children unless the program set one.
func RaiseNoFile(need uint64) (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if r.Max < need {
		return 0, fmt.Errorf("RLIMIT_NOFILE hard limit is %d, %d needed: raise it (ulimit -Hn)", r.Max, need)
	}
	r.Cur = max(r.Cur, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("setrlimit NOFILE %d: %w", r.Cur, err)
	}
	return r.Cur, nil
}
