// Command mosnlite-bench measures HTTP keep-alive requests per second, p99
// latency and TCP throughput straight to a backend, through mosnlite and
// through nginx, in one run, and prints them side by side with the
// mosnlite/nginx ratio. It is a benchmark, not a test: run it by hand from the
// repository root with `go run ./bench/cmd/mosnlite-bench`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/mosnlite/mosnlite/bench/benchkit"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	streams     int
	bodySize    int
	loader      string
	mosnlite    string
	nginx       string
	keep        bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("mosnlite-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measurement")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "HTTP warm-up before each HTTP measurement")
	fs.IntVar(&o.connections, "connections", 50, "concurrent HTTP keep-alive connections")
	fs.IntVar(&o.streams, "streams", 4, "parallel TCP streams for the throughput test")
	fs.IntVar(&o.bodySize, "body", 64, "backend HTTP response body size in bytes")
	fs.StringVar(&o.loader, "loader", "auto", "HTTP load generator: wrk, go, or auto (wrk if installed)")
	fs.StringVar(&o.mosnlite, "mosnlite", "", "mosnlite binary to use (default: go build ./cmd/mosnlite)")
	fs.StringVar(&o.nginx, "nginx", "", "nginx binary (default: nginx in PATH)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.duration < time.Second || o.connections < 1 || o.streams < 1 || o.bodySize < 0 {
		fmt.Fprintln(stderr, "mosnlite-bench: need -duration >= 1s, -connections >= 1, -streams >= 1, -body >= 0")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "mosnlite-bench: %v\n", err)
		return 1
	}
	return 0
}

// target is one column: where its HTTP and TCP traffic goes.
type target struct {
	name     string
	httpAddr string
	tcpAddr  string
}

func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	dir, err := os.MkdirTemp("", "mosnlite-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if o.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// Everything that can be missing is checked before any load runs.
	nginxBin, stream, err := findNginx(o.nginx)
	if err != nil {
		return err
	}
	wrkBin, err := pickLoader(o.loader)
	if err != nil {
		return err
	}
	mosnliteBin, err := benchkit.MosnliteBinary(ctx, o.mosnlite, dir, logf)
	if err != nil {
		return err
	}

	b, err := startBackend(o.bodySize)
	if err != nil {
		return err
	}
	defer b.close()

	addrs := make([]string, 4)
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return err
		}
	}
	ml, err := startMosnlite(ctx, mosnliteBin, dir, addrs[0], addrs[1], b, o.connections)
	if err != nil {
		return err
	}
	defer ml.stop(syscall.SIGTERM, 5*time.Second)
	ng, err := startNginx(ctx, nginxBin, stream, dir, addrs[2], addrs[3], b, o.connections)
	if err != nil {
		return err
	}
	defer ng.stop(syscall.SIGTERM, 5*time.Second)

	targets := [numCols]target{
		colDirect:   {"direct", b.httpAddr(), b.sinkAddr()},
		colMosnlite: {"mosnlite", addrs[0], addrs[1]},
		colNginx:    {"nginx", addrs[2], addrs[3]},
	}
	loaderName := "built-in Go load generator"
	if wrkBin != "" {
		loaderName = "wrk"
	}
	logf("%s; %s; HTTP: %d connections, %v each, %s; TCP: %d streams, %v each; %d CPUs",
		mosnliteVersion(mosnliteBin), nginxVersion(nginxBin), o.connections, o.duration, loaderName,
		o.streams, o.duration, runtime.NumCPU())

	var hres [numCols]httpResult
	var tres [numCols]tcpResult
	for i, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if hres[i], err = measureHTTP(ctx, o, wrkBin, t); err != nil {
			return err
		}
		logf("%-8s HTTP %v", t.name, hres[i])
		if tres[i], err = tcpLoad(ctx, b, t.tcpAddr, o.streams, o.duration); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		if tres[i].Bytes == 0 {
			return fmt.Errorf("%s: no TCP bytes reached the backend", t.name)
		}
		logf("%-8s TCP  %v", t.name, tres[i])
	}
	for _, p := range []*proc{ml, ng} {
		if p.exited() {
			return fmt.Errorf("%s exited during the run (%v); log:\n%s", p.name, p.err, p.logTail(20))
		}
	}
	fmt.Fprintln(stdout)
	if err := writeTable(stdout, resultRows(hres, tres)); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nratio = mosnlite ÷ nginx; \"better\" says which way is good. All on one machine: load generator, backend and proxy share its CPUs.")
	return nil
}

// pickLoader returns the wrk binary to use, or "" for the built-in generator.
func pickLoader(loader string) (string, error) {
	switch loader {
	case "go":
		return "", nil
	case "wrk", "auto":
		p, err := exec.LookPath("wrk")
		if err != nil {
			if loader == "wrk" {
				return "", fmt.Errorf("wrk not found in PATH; install it with: apt-get install -y wrk (or use -loader go)")
			}
			return "", nil
		}
		return p, nil
	default:
		return "", fmt.Errorf("-loader %q: want wrk, go or auto", loader)
	}
}

// measureHTTP warms the target up with the Go generator (which also checks
// that answers are right), then measures with wrk or the Go generator.
func measureHTTP(ctx context.Context, o options, wrkBin string, t target) (httpResult, error) {
	if o.warmup > 0 {
		w := goHTTPLoad(ctx, t.httpAddr, o.connections, o.warmup, o.bodySize)
		if w.Requests == 0 {
			return httpResult{}, fmt.Errorf("%s: no successful HTTP request during warm-up (%d errors)", t.name, w.Errors)
		}
	}
	if wrkBin == "" {
		r := goHTTPLoad(ctx, t.httpAddr, o.connections, o.duration, o.bodySize)
		if r.Requests == 0 {
			return r, errors.New(t.name + ": no successful HTTP request")
		}
		return r, nil
	}
	r, err := runWrk(ctx, wrkBin, "http://"+t.httpAddr+"/", o.connections, o.duration)
	if err != nil {
		return r, fmt.Errorf("%s: %w", t.name, err)
	}
	return r, nil
}
