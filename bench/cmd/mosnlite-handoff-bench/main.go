// Command mosnlite-handoff-bench measures how long a mosnlite upgrade takes
// with 1, 100 and 1000 listeners: from the start of the new process to its ack
// and to its ready line, the new process's own view of the handoff, and from
// the ack to the exit of the idle old process. It is a benchmark, not a test:
// run it by hand from the repository root with
// `go run ./bench/cmd/mosnlite-handoff-bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/mosnlite/mosnlite/bench/benchkit"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

type options struct {
	runs      int
	listeners []int
	mosnlite  string
	keep      bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	var counts string
	fs := flag.NewFlagSet("mosnlite-handoff-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.runs, "runs", 5, "handoffs measured per listener count")
	fs.StringVar(&counts, "listeners", "1,100,1000", "comma-separated listener counts")
	fs.StringVar(&o.mosnlite, "mosnlite", "", "mosnlite binary to use (default: go build ./cmd/mosnlite)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.listeners, err = parseCounts(counts); err != nil {
		fmt.Fprintf(stderr, "mosnlite-handoff-bench: -listeners: %v\n", err)
		return 2
	}
	if o.runs < 1 || o.runs > 1000 {
		fmt.Fprintln(stderr, "mosnlite-handoff-bench: -runs must be between 1 and 1000")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "mosnlite-handoff-bench: FAILED: %v\n", err)
		return 1
	}
	return 0
}

// parseCounts reads "1,100,1000": positive counts, at most maxListeners each.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		if n < 1 || n > maxListeners {
			return nil, fmt.Errorf("%d: want 1 to %d", n, maxListeners)
		}
		out = append(out, n)
	}
	return out, nil
}

// maxListeners bounds -listeners: fds, ports and log volume stay reasonable.
const maxListeners = 10000

func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	// Each process holds every listener, the new one twice while it adopts
	// them, plus the bench's own test connections; children inherit the limit.
	need := uint64(3*slices.Max(o.listeners) + 256)
	nofile, err := benchkit.RaiseNoFile(need)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "mosnlite-handoff-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if o.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	bin, err := benchkit.MosnliteBinary(ctx, o.mosnlite, dir, logf)
	if err != nil {
		return err
	}
	logf("%s; %d runs per count; RLIMIT_NOFILE %d; %d CPUs", mosnliteVersion(bin), o.runs, nofile, runtime.NumCPU())

	var rows []row
	for _, n := range o.listeners {
		if err := ctx.Err(); err != nil {
			return err
		}
		ss, err := measure(ctx, bin, filepath.Join(dir, fmt.Sprintf("n%d", n)), n, o.runs, logf)
		if err != nil {
			return fmt.Errorf("%d listeners: %w", n, err)
		}
		rows = append(rows, summarize(n, ss))
	}
	fmt.Fprintln(stdout)
	if err := writeTable(stdout, rows); err != nil {
		return err
	}
	fmt.Fprintln(stdout, legend)
	return nil
}

const legend = `
start→ack, start→ready: wall clock from just before the new process is exec'd to the bench reading its
  "acked" / "ready" log line (process start-up included).
in-process handoff: the new process's own handoff_seconds, from the start of its handoff to ready; it
  includes, after the ack, waiting for the old process to stop accepting and send its last counters.
ack→old exit: from the "acked" line to the exit of the old process, idle (no connections).
fds passed: sockets in the manifest (the listeners plus admin).
Medians; p90 is nearest-rank (with fewer than 10 runs it is the max). Every handoff was checked: the old
process exited 0, /server_info shows the new pid and generation, /listeners the same ports, and every
listener answered an HTTP request.`

// mosnliteVersion is the first line of `mosnlite version`.
func mosnliteVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "mosnlite (version unknown)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
