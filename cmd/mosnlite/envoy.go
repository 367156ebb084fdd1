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
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig/envoy"
	"github.com/mosnlite/mosnlite/reconfig/envoy/hotrestarter"
	"github.com/mosnlite/mosnlite/server"
)

// envoyFlags is Envoy's command line: -c, --mode and the hot-restart flags.
type envoyFlags struct {
	config string
	mode   string
	opts   envoy.Options
}

func parseEnvoyFlags(args []string, stderr io.Writer) (envoyFlags, error) {
	f := envoyFlags{opts: envoy.DefaultOptions()}
	fs := flag.NewFlagSet("mosnlite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "c", "", "config file")
	fs.StringVar(&f.config, "config-path", "", "config file (same as -c)")
	fs.StringVar(&f.mode, "mode", "serve", "serve or validate")
	envoy.RegisterFlags(fs, &f.opts)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.mode != "serve" && f.mode != "validate" {
		return f, fmt.Errorf("--mode %q: want serve or validate", f.mode)
	}
	return f, nil
}

// isEnvoyServe reports whether args run a hot-restart-enabled Envoy-style
// server: such a process dies with its launcher (the hot-restarter), as
// Envoy's does. Read in init, before flags are parsed properly.
func isEnvoyServe(args []string) bool {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return false
	}
	for i, a := range args {
		switch {
		case a == "--disable-hot-restart" || a == "-disable-hot-restart",
			a == "--hot-restart-version" || a == "-hot-restart-version",
			a == "--mode=validate" || a == "-mode=validate",
			(a == "--mode" || a == "-mode") && i+1 < len(args) && args[i+1] == "validate":
			return false
		}
	}
	return true
}

// init sets PR_SET_PDEATHSIG (SIGTERM) for an Envoy-style server. It must run
// on the main thread, which the Go runtime guarantees for init functions.
func init() {
	if isEnvoyServe(os.Args[1:]) {
		_ = envoy.SetParentDeathSignal(0)
	}
}

// cmdEnvoy runs mosnlite with Envoy's command line (hot restart by epochs).
func cmdEnvoy(args []string, stdout, stderr io.Writer) int {
	f, err := parseEnvoyFlags(args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 2
	}
	if f.opts.HotRestartVersion {
		fmt.Fprintln(stderr, envoy.Version(f.opts.DisableHotRestart))
		return 0
	}
	if f.config == "" {
		fmt.Fprintln(stderr, "mosnlite: -c FILE is required")
		return 2
	}
	if f.mode == "validate" {
		return cmdValidate([]string{"-c", f.config}, stdout, stderr)
	}
	if err := f.opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	cfg, path, err := loadConfig(f.config)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	pid := os.Getpid()
	lg, err := newLogs(cfg, pid, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: logging: %v\n", err)
		return 1
	}
	defer lg.close()
	bi := buildInfo()
	srv, err := server.New(server.Options{
		ConfigPath: path, Config: cfg, Build: bi.BuildInfo,
		Log: lg.process, ServerLogs: lg.servers, CommandLine: os.Args, PID: pid,
		Envoy: &server.EnvoyOptions{Options: f.opts},
	})
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	lg.process.WithFields(logrus.Fields{"version": bi.String(), "config": path, "restart_epoch": f.opts.RestartEpoch}).Info("starting (Envoy-compatible command line)")
	if err := srv.StartEnvoy(context.Background()); err != nil {
		lg.process.WithError(err).Error("start failed")
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	return serveLoop(srv, sigs, lg, loopHooks{
		stop: srv.ShutdownEnvoy,
		hup: func() {
			// Envoy ignores SIGHUP: restarts come from the hot-restarter.
			lg.process.Info("SIGHUP ignored: with the Envoy command line, restarts come from the hot-restarter")
		},
	})
}

// cmdHotRestarter is Envoy's hot-restarter.py: it runs START_SCRIPT with
// RESTART_EPOCH=0, then 1, 2, … on each SIGHUP.
func cmdHotRestarter(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: mosnlite hot-restarter START_SCRIPT")
		return 2
	}
	script, err := filepath.Abs(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	if st, err := os.Stat(script); err != nil || st.IsDir() {
		fmt.Fprintf(stderr, "mosnlite: hot-restarter: start script %s: %v\n", script, errors.Join(err, errIfDir(st)))
		return 1
	}
	lg := logrus.New()
	lg.SetOutput(stderr)
	lg.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	r := &hotrestarter.Restarter{
		Spawner: &hotrestarter.ExecSpawner{Path: script},
		Log:     logrus.NewEntry(lg).WithFields(logrus.Fields{"component": "hot-restarter", "pid": os.Getpid()}),
	}
	return r.Run(context.Background(), sigs)
}

func errIfDir(st os.FileInfo) error {
	if st != nil && st.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}
