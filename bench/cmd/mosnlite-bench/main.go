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
	"strings"
	"syscall"
	"time"
)

// h2Conns is how many HTTP/2 connections the h2c and gRPC loads open;
// -connections streams are spread over them.
const h2Conns = 4

type options struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	streams     int
	bodySize    int
	rate        float64
	cpuDuration time.Duration
	idleConns   int
	runs        int
	loader      string
	mosnlite    string
	nginx       string
	cpuProfile  string
	only        string
	keep        bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("mosnlite-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each HTTP and TCP measurement")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "HTTP warm-up before each HTTP measurement")
	fs.IntVar(&o.connections, "connections", 50, "concurrent HTTP connections")
	fs.IntVar(&o.streams, "streams", 4, "parallel TCP streams for the throughput test")
	fs.IntVar(&o.bodySize, "body", 64, "backend HTTP response body size in bytes")
	fs.Float64Var(&o.rate, "rate", 10000, "request rate of the CPU-per-request measurement (req/s)")
	fs.DurationVar(&o.cpuDuration, "cpu-duration", 10*time.Second, "length of the CPU-per-request measurement")
	fs.IntVar(&o.idleConns, "idle-conns", 5000, "idle keep-alive connections of the memory measurement")
	fs.IntVar(&o.runs, "runs", 1, "repeat everything this many times and print the median of each figure")
	fs.StringVar(&o.loader, "loader", "auto", "HTTP load generator: wrk, go, or auto (wrk if installed)")
	fs.StringVar(&o.mosnlite, "mosnlite", "", "mosnlite binary to use (default: go build ./cmd/mosnlite)")
	fs.StringVar(&o.nginx, "nginx", "", "nginx binary (default: nginx in PATH)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of mosnlite under the first keep-alive load to this file (and under the fixed-rate load to this file + \".fixed-rate\")")
	fs.StringVar(&o.only, "only", "", "measure only these, comma-separated: keepalive, connclose, tlskeepalive, handshakes, cpu, idle, h2c, grpc, tcp")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.duration < time.Second || o.connections < 1 || o.streams < 1 || o.bodySize < 0 ||
		o.rate <= 0 || o.cpuDuration < time.Second || o.idleConns < 1 || o.runs < 1 {
		fmt.Fprintln(stderr, "mosnlite-bench: need -duration >= 1s, -connections >= 1, -streams >= 1, -body >= 0, "+
			"-rate > 0, -cpu-duration >= 1s, -idle-conns >= 1, -runs >= 1")
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

// target is one column: where its HTTP and TCP traffic goes, and the
// process whose CPU and memory are measured (nil for the backend).
type target struct {
	name      string
	httpAddr  string
	httpsAddr string // "" for the backend: TLS is measured on the proxies
	tcpAddr   string
	// h2cAddr and grpcAddr take HTTP/2 with prior knowledge: proxied to
	// the HTTP/1 backend, and gRPC to the h2c gRPC backend (for the
	// direct column, that backend itself).
	h2cAddr, grpcAddr string
	proc              *proc
	profile           string // write a CPU profile of the keep-alive load here
}

// result is everything measured on one target in one run.
type result struct {
	keepAlive, connClose httpResult
	// Over TLS (proxies only): keep-alive, and a full handshake per request.
	tlsKeepAlive, handshakes httpResult
	cpu                      cpuResult  // proxies only
	idle                     idleResult // proxies only
	tcp                      tcpResult
	h2c, grpc                httpResult
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
	// The idle connections: ours, the proxy's, and room for everything else
	// (the children inherit the limit).
	if _, err := benchkit.RaiseNoFile(uint64(2*o.idleConns + 4096)); err != nil {
		return err
	}

	b, err := startBackend(o.bodySize)
	if err != nil {
		return err
	}
	defer b.close()

	cert, err := makeBenchCert(dir)
	if err != nil {
		return err
	}
	hb, err := startH2Backend(o.bodySize)
	if err != nil {
		return err
	}
	defer hb.close()

	addrs := make([]string, 10)
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return err
		}
	}
	pprofAddr := ""
	if o.cpuProfile != "" {
		if pprofAddr, err = freePort(); err != nil {
			return err
		}
	}
	ml, err := startMosnlite(ctx, mosnliteBin, dir, addrs[0], addrs[4], addrs[1], pprofAddr, b, cert, o.connections, h2Ports{addrs[6], addrs[7], hb.addr()})
	if err != nil {
		return err
	}
	defer ml.stop(syscall.SIGTERM, 5*time.Second)
	ng, err := startNginx(ctx, nginxBin, stream, dir, addrs[2], addrs[5], addrs[3], b, cert, o.connections, o.idleConns, h2Ports{addrs[8], addrs[9], hb.addr()})
	if err != nil {
		return err
	}
	defer ng.stop(syscall.SIGTERM, 5*time.Second)

	targets := [numCols]target{
		colDirect:   {name: "direct", httpAddr: b.httpAddr(), tcpAddr: b.sinkAddr(), h2cAddr: hb.addr(), grpcAddr: hb.addr()},
		colMosnlite: {name: "mosnlite", httpAddr: addrs[0], httpsAddr: addrs[4], tcpAddr: addrs[1], h2cAddr: addrs[6], grpcAddr: addrs[7], proc: ml},
		colNginx:    {name: "nginx", httpAddr: addrs[2], httpsAddr: addrs[5], tcpAddr: addrs[3], h2cAddr: addrs[8], grpcAddr: addrs[9], proc: ng},
	}
	loaderName := "built-in Go load generator"
	if wrkBin != "" {
		loaderName = "wrk"
	}
	logf("%s; %s; HTTP: %d connections, %v each, %s; CPU at %.0f req/s for %v; %d idle connections; TCP: %d streams, %v each; %d CPUs",
		mosnliteVersion(mosnliteBin), nginxVersion(nginxBin), o.connections, o.duration, loaderName,
		o.rate, o.cpuDuration, o.idleConns, o.streams, o.duration, runtime.NumCPU())

	todo, err := selected(steps(o, wrkBin, b, cert, pprofAddr, logf), o.only)
	if err != nil {
		return err
	}
	var tables [][]row
	for runNo := 1; runNo <= o.runs; runNo++ {
		var res [numCols]result
		// The proxies take turns going first from one run to the next.
		order := []int{colDirect, colMosnlite, colNginx}
		if runNo%2 == 0 {
			order = []int{colDirect, colNginx, colMosnlite}
		}
		for _, st := range todo {
			for _, i := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				if st.proxiesOnly && targets[i].proc == nil {
					continue
				}
				t := targets[i]
				if runNo == 1 && i == colMosnlite {
					t.profile = o.cpuProfile
				}
				if err := st.run(ctx, t, &res[i]); err != nil {
					return err
				}
			}
		}
		for _, p := range []*proc{ml, ng} {
			if p.exited() {
				return fmt.Errorf("%s exited during the run (%v); log:\n%s", p.name, p.err, p.logTail(20))
			}
		}
		rows := resultRows(res, o)
		tables = append(tables, rows)
		if o.runs > 1 {
			fmt.Fprintf(stdout, "\nrun %d of %d\n", runNo, o.runs)
			if err := writeTable(stdout, rows); err != nil {
				return err
			}
		}
	}
	if o.runs > 1 {
		fmt.Fprintf(stdout, "\nmedian of %d runs\n", o.runs)
	} else {
		fmt.Fprintln(stdout)
	}
	if err := writeTable(stdout, medianRows(tables)); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nratio = mosnlite ÷ nginx; \"better\" says which way is good. All on one machine: load generator, backend and proxy share its CPUs.")
	return nil
}

// step is one measurement, taken on every target in turn before the next
// step begins, so that a proxy and its peer are measured minutes apart at
// most by one step's length, under the same background load.
type step struct {
	name        string // for -only
	proxiesOnly bool   // the backend itself has no proxy process to measure
	run         func(ctx context.Context, t target, r *result) error
}

// profiled runs measure while, when path is set, a CPU profile of length d
// is taken from t's pprof port and written to path.
func profiled(ctx context.Context, t target, pprofAddr, path string, d time.Duration, logf func(string, ...any), measure func() error) error {
	var prof *profileFetch
	if path != "" {
		prof = startProfile(ctx, pprofAddr, d, path)
	}
	if err := measure(); err != nil {
		return err
	}
	if prof == nil {
		return nil
	}
	if err := prof.wait(); err != nil {
		return fmt.Errorf("%s: cpu profile: %w", t.name, err)
	}
	logf("%-8s CPU profile written to %s", t.name, path)
	return nil
}

func steps(o options, wrkBin string, b *backend, cert benchCert, pprofAddr string, logf func(string, ...any)) []step {
	return []step{
		{name: "keepalive", run: func(ctx context.Context, t target, r *result) error {
			err := profiled(ctx, t, pprofAddr, t.profile, o.duration, logf, func() error {
				var err error
				r.keepAlive, err = measureHTTP(ctx, o, wrkBin, t, false)
				return err
			})
			if err != nil {
				return err
			}
			logf("%-8s HTTP keep-alive %v", t.name, r.keepAlive)
			return nil
		}},
		{name: "connclose", run: func(ctx context.Context, t target, r *result) error {
			var err error
			if r.connClose, err = measureHTTP(ctx, o, wrkBin, t, true); err != nil {
				return err
			}
			logf("%-8s HTTP conn-per-request %v", t.name, r.connClose)
			return nil
		}},
		{name: "tlskeepalive", proxiesOnly: true, run: func(ctx context.Context, t target, r *result) error {
			var err error
			if r.tlsKeepAlive, err = measureHTTPS(ctx, o, cert, t, false); err != nil {
				return err
			}
			logf("%-8s HTTPS keep-alive %v", t.name, r.tlsKeepAlive)
			return nil
		}},
		{name: "handshakes", proxiesOnly: true, run: func(ctx context.Context, t target, r *result) error {
			var err error
			if r.handshakes, err = measureHTTPS(ctx, o, cert, t, true); err != nil {
				return err
			}
			logf("%-8s HTTPS full handshake per request %v", t.name, r.handshakes)
			return nil
		}},
		{name: "cpu", proxiesOnly: true, run: func(ctx context.Context, t target, r *result) error {
			path := ""
			if t.profile != "" {
				path = t.profile + ".fixed-rate"
			}
			err := profiled(ctx, t, pprofAddr, path, o.cpuDuration, logf, func() error {
				var err error
				if r.cpu, err = cpuPerRequest(ctx, t.proc.cmd.Process.Pid, t.httpAddr, o.connections, o.rate, o.cpuDuration, o.bodySize); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			logf("%-8s CPU %v", t.name, r.cpu)
			return nil
		}},
		{name: "idle", proxiesOnly: true, run: func(ctx context.Context, t target, r *result) error {
			var err error
			if r.idle, err = idleRSS(ctx, t.proc.cmd.Process.Pid, t.httpAddr, o.idleConns, o.bodySize); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			logf("%-8s memory %v", t.name, r.idle)
			return nil
		}},
		h2Step("h2c", o, false, logf),
		h2Step("grpc", o, true, logf),
		{name: "tcp", run: func(ctx context.Context, t target, r *result) error {
			var err error
			if r.tcp, err = tcpLoad(ctx, b, t.tcpAddr, o.streams, o.duration); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if r.tcp.Bytes == 0 {
				return fmt.Errorf("%s: no TCP bytes reached the backend", t.name)
			}
			logf("%-8s TCP  %v", t.name, r.tcp)
			return nil
		}},
	}
}

// h2Step measures h2c requests or gRPC unary calls (grpc) on a target.
func h2Step(name string, o options, grpc bool, logf func(string, ...any)) step {
	return step{name: name, run: func(ctx context.Context, t target, r *result) error {
		addr, res, what := t.h2cAddr, &r.h2c, "h2c request"
		if grpc {
			addr, res, what = t.grpcAddr, &r.grpc, "gRPC call"
		}
		*res = h2Load(ctx, addr, h2Conns, max(1, o.connections/h2Conns), o.duration, grpc, o.bodySize)
		if res.Requests == 0 {
			return fmt.Errorf("%s: no %s answered (%d errors)", t.name, what, res.Errors)
		}
		logf("%-8s %-4s %v", t.name, name, *res)
		return nil
	}}
}

// measures reports whether -only selects the named step.
func (o options) measures(name string) bool {
	if o.only == "" {
		return true
	}
	for _, n := range strings.Split(o.only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

// selected filters steps by -only (comma-separated step names; empty is all).
func selected(all []step, only string) ([]step, error) {
	if only == "" {
		return all, nil
	}
	var out []step
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, s := range all {
			if s.name == strings.TrimSpace(name) {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-only: unknown measurement %q (want keepalive, connclose, tlskeepalive, handshakes, cpu, idle, h2c, grpc, tcp)", name)
		}
	}
	return out, nil
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
// that answers are right), then measures with wrk or the Go generator:
// keep-alive, or a new connection per request with closeEach.
func measureHTTP(ctx context.Context, o options, wrkBin string, t target, closeEach bool) (httpResult, error) {
	spec := loadSpec{addr: t.httpAddr, conns: o.connections, d: o.warmup, wantBody: o.bodySize, closeEach: closeEach}
	if o.warmup > 0 {
		w := goHTTPLoad(ctx, spec)
		if w.Requests == 0 {
			return httpResult{}, fmt.Errorf("%s: no successful HTTP request during warm-up (%d errors)", t.name, w.Errors)
		}
	}
	if wrkBin == "" {
		spec.d = o.duration
		r := goHTTPLoad(ctx, spec)
		if r.Requests == 0 {
			return r, errors.New(t.name + ": no successful HTTP request")
		}
		return r, nil
	}
	// The CPU each side used while wrk ran: the proxy's process tree, and
	// this process, where the backend runs and nothing else is busy then.
	var before procUsage
	if t.proc != nil {
		var err error
		if before, err = usage(t.proc.cmd.Process.Pid); err != nil {
			return httpResult{}, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	selfBefore, err := selfCPU()
	if err != nil {
		return httpResult{}, err
	}
	r, err := runWrk(ctx, wrkBin, "http://"+t.httpAddr+"/", o.connections, o.duration, closeEach)
	if err != nil {
		return r, fmt.Errorf("%s: %w", t.name, err)
	}
	selfAfter, err := selfCPU()
	if err != nil {
		return r, err
	}
	r.BackendCPU = selfAfter - selfBefore
	if t.proc != nil {
		after, err := usage(t.proc.cmd.Process.Pid)
		if err != nil {
			return r, fmt.Errorf("%s: %w", t.name, err)
		}
		r.ProxyCPU = after.CPU - before.CPU
	}
	return r, nil
}
