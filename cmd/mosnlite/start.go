package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/internal/procs"
	"github.com/mosnlite/mosnlite/server"
)

// loadConfig reads -c FILE, or the embedded default when path is "".
// It returns the absolute path ("" for the default).
func loadConfig(path string) (*config.Config, string, error) {
	if path == "" {
		cfg, err := config.Default()
		if err != nil {
			return nil, "", err
		}
		return cfg, "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("config path %q: %w", path, err)
	}
	cfg, err := config.Load(abs)
	if err != nil {
		return nil, "", err
	}
	return cfg, abs, nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "mosnlite validate: -c FILE is required")
		return 2
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	printWarnings(stderr, cfg)
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

// printConfigError writes why a config was refused: every problem on its
// own line under the file's name, or the error that kept it from being read.
func printConfigError(w io.Writer, path string, err error) {
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		fmt.Fprintf(w, "mosnlite: %v\n", err)
		return
	}
	fmt.Fprintf(w, "mosnlite: invalid config %s:\n", path)
	for _, p := range ve.Problems {
		fmt.Fprintf(w, "%s\n", p)
	}
}

// printWarnings writes the config's warnings, one line each.
func printWarnings(w io.Writer, cfg *config.Config) {
	for _, p := range cfg.Warnings {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
}

// setProcs sets GOMAXPROCS: to concurrency (Envoy's --concurrency) when it
// is set, else to the first server's processor, as MOSN does: unless the
// GOMAXPROCS environment variable is set. It returns the GOMAXPROCS in
// effect, and whether it is to be governed: when none of those fixed it (a
// processor of "auto", or none, or a count below 1), the processor governor
// fits it to the load, up to Go's default (every CPU the process may use,
// CPU quota included).
func setProcs(cfg *config.Config, concurrency int) (int, bool) {
	governed := false
	switch {
	case concurrency > 0:
		runtime.GOMAXPROCS(concurrency)
	case os.Getenv("GOMAXPROCS") != "":
	case len(cfg.Servers) > 0 && cfg.Servers[0].Processor != nil && !cfg.Servers[0].Processor.Auto && cfg.Servers[0].Processor.N > 0:
		runtime.GOMAXPROCS(cfg.Servers[0].Processor.N)
	default:
		governed = true
	}
	return runtime.GOMAXPROCS(0), governed
}

// governProcs starts the processor governor when governed, until the
// returned stop is called.
func governProcs(log *logrus.Entry, max int, governed bool) (stop func()) {
	if !governed || max < 2 {
		return func() {}
	}
	smp := procs.NewSampler()
	g, err := procs.New(procs.Options{Max: max, Read: smp.Read, RunQueue: smp.RunQueue, Set: func(n int) { runtime.GOMAXPROCS(n) }, After: time.After, Log: log})
	if err != nil { // the options above are all set
		log.WithError(err).Warn("processor governor not started")
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	return func() { cancel(); <-done }
}

type startFlags struct {
	config  string
	daemon  bool
	logFile string
	wait    string
	pidFile string
}

func parseStartFlags(args []string, stderr io.Writer) (startFlags, error) {
	var f startFlags
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "c", "", "config file (default: the embedded default config)")
	fs.BoolVar(&f.daemon, "daemon", false, "start in the background; return once the new process serves")
	fs.StringVar(&f.logFile, "log-file", "", "with --daemon: where the process's stdout and stderr go (default /dev/null; - for ours, e.g. the journal)")
	fs.StringVar(&f.wait, "wait-timeout", "60s", "with --daemon: how long to wait for the process to serve")
	fs.StringVar(&f.pidFile, "pid-file", "", "pid file, written once this process serves (overrides the config's pid)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

func cmdStart(args []string, stdout, stderr io.Writer) int {
	execTime := time.Now() // the start of the handoff, exec → ack
	f, err := parseStartFlags(args, stderr)
	if err != nil {
		return 2
	}
	if f.daemon {
		return startDaemon(f, stdout, stderr)
	}
	if why := standbyReason(os.Getenv); why != "" {
		notifyReady(fmt.Errorf("standing by: %s", why))
		return standBy(why, stderr)
	}
	cfg, path, err := loadConfig(f.config)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		notifyReady(fmt.Errorf("config: %w", err))
		return 1
	}
	pid := os.Getpid()
	lg, err := newLogs(cfg, pid, stdout, stderr, logOverrides{})
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: logging: %v\n", err)
		notifyReady(err)
		return 1
	}
	defer lg.close()
	lg.warn(cfg)
	maxProcs, governed := setProcs(cfg, 0)
	defer governProcs(lg.process, maxProcs, governed)()
	bi := buildInfo()
	pf := pidFile{path: orDefault(f.pidFile, cfg.Pid)}
	mgr, err := newManager(lg.process, os.Getenv, pid, pf)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		notifyReady(err)
		return 1
	}
	act, err := activatedSockets(lg.process, os.Getenv, os.Unsetenv, pid)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		notifyReady(err)
		return 1
	}
	srv, err := server.New(server.Options{
		ConfigPath:  path,
		Config:      cfg,
		Build:       bi.BuildInfo,
		Log:         lg.process,
		ServerLogs:  lg.servers,
		CommandLine: os.Args,
		PID:         pid,
		ReadyBy:     readyDeadline(),
		ExecTime:    execTime,
		Events:      mgr.events(),
		Activated:   act,
		Instance:    instanceName(os.Getenv),
		Carry:       mgr.carry,
		Stdout:      stdout,
		Stderr:      stderr,
	})
	if err != nil {
		for _, a := range act {
			a.File.Close()
		}
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		notifyReady(err)
		return 1
	}
	// Signals are caught before Start so that none is lost while starting.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	lg.process.WithFields(map[string]interface{}{"version": bi.String(), "config": orDefault(path, "(embedded default)"), "uds_dir": srv.UDSDir()}).Info("starting")
	if err := srv.Start(context.Background()); err != nil {
		lg.startFailed(err, stderr)
		notifyReady(err)
		return 1
	}
	mgr.serving(srv)
	notifyReady(nil)
	code, stoppedHere := serveLoop(srv, sigs, lg, loopHooks{
		stop:     srv.Shutdown,
		stopping: mgr.stopping,
		hup: func() {
			if pid == 1 {
				// Its successor would be its child, in its PID namespace,
				// which the kernel ends when PID 1 exits after the handover.
				lg.process.Error("SIGHUP upgrade refused: this process is PID 1 of its PID namespace, and a successor it " +
					"starts would be killed with it when it exits after the handover (an outage); run mosnlite under an init " +
					"(tini, docker run --init, shareProcessNamespace: true) or upgrade from another container; still serving")
				return
			}
			lg.process.Info("SIGHUP: starting a successor with the same binary and config")
			mgr.reload("SIGHUP")
			go func() {
				pid, err := spawnSuccessor(f)
				if err != nil {
					lg.process.WithError(err).Error("SIGHUP upgrade failed; still serving")
					mgr.failed(err)
					return
				}
				lg.process.WithField("new_pid", pid).Info("SIGHUP upgrade: successor serves")
			}()
		},
	})
	if stoppedHere {
		pf.stopped(lg.process, pid)
	}
	mgr.exit()
	return code
}

// serving writes the pid file once this process serves; a failure is
// logged, not fatal (the process serves).
func (p pidFile) serving(log *logrus.Entry, pid int) {
	if p.path == "" {
		return
	}
	if err := p.write(pid); err != nil {
		log.WithError(err).Error("write pid file")
		return
	}
	log.WithField("path", p.path).Info("pid file written")
}

// stopped removes the pid file after a stop of this process for good, if
// it still names this process (a successor's file stays).
func (p pidFile) stopped(log *logrus.Entry, pid int) {
	removed, err := p.removeIfOwn(pid)
	switch {
	case err != nil:
		log.WithError(err).Warn("remove pid file")
	case removed:
		log.WithField("path", p.path).Info("pid file removed")
	}
}

// loopHooks are what differs between the MOSN-style and the Envoy-style process.
type loopHooks struct {
	stop     func(context.Context) error // graceful stop (SIGTERM, SIGINT, /quitquitquit)
	stopping func(why string)            // told first (nil: nobody)
	hup      func()
}

// serveLoop handles signals until the process is done: taken over by a
// successor and drained, terminated, or stopped. It returns the exit code,
// and whether this process was told to stop (by a signal or the admin API)
// rather than handing over to a successor on its own.
func serveLoop(srv *server.Server, sigs <-chan os.Signal, lg *logs, h loopHooks) (int, bool) {
	log := lg.process
	stopping := false
	stop := func(why string) {
		if stopping {
			return
		}
		stopping = true
		log.WithField("reason", why).Info("stopping gracefully")
		if h.stopping != nil {
			h.stopping(why)
		}
		go func() {
			if err := h.stop(context.Background()); err != nil {
				log.WithError(err).Warn("graceful stop")
			}
		}()
	}
	quit := srv.QuitRequested()
	for {
		select {
		case <-srv.Done():
			if err := srv.Err(); err != nil {
				log.WithError(err).Error("stopped with error")
				return 1, stopping
			}
			log.Info("exiting")
			return 0, stopping
		case <-quit:
			quit = nil // closed for good: stop listening
			stop("quit requested")
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if err := errors.Join(lg.reopen(), srv.ReopenLogs()); err != nil {
					log.WithError(err).Error("reopen log files")
				} else {
					log.Info("log files reopened")
				}
			case syscall.SIGHUP:
				h.hup()
			default:
				stop(sig.String())
			}
		}
	}
}

// errNotReady is returned when a started process went away without saying it serves.
var errNotReady = errors.New("the new process exited before it was ready")
