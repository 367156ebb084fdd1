package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/reconfig/envoy"
	"github.com/mosnlite/mosnlite/reconfig/envoy/hotrestarter"
	"github.com/mosnlite/mosnlite/server"
	"github.com/mosnlite/mosnlite/service"
)

// isEnvoyServe reports whether args run a hot-restart-enabled Envoy-style
// server: such a process dies with its launcher (the hot-restarter), as
// Envoy's does. Read in init, before flags are parsed properly.
func isEnvoyServe(args []string) bool {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return false
	}
	for i, a := range args {
		mode, _ := strings.CutPrefix(strings.TrimLeft(a, "-"), "mode=")
		if (a == "--mode" || a == "-mode") && i+1 < len(args) {
			mode = args[i+1]
		}
		switch {
		case a == "--disable-hot-restart" || a == "-disable-hot-restart",
			a == "--hot-restart-version" || a == "-hot-restart-version",
			a == "--help" || a == "-help" || a == "-h" || a == "--version" || a == "-version",
			mode == modeValidate || mode == modeInitOnly,
			strings.HasPrefix(a, "-test."): // a go test binary
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
// Exit codes are Envoy's: 0, or 1 for any problem, a bad flag included.
func cmdEnvoy(args []string, stdout, stderr io.Writer) int {
	execTime := time.Now() // the start of the handoff, exec → ack
	f, err := parseEnvoyFlags(args)
	if errors.Is(err, errEnvoyHelp) {
		envoyUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	if f.version {
		fmt.Fprintln(stdout, buildInfo().String())
		return 0
	}
	if f.opts.HotRestartVersion {
		fmt.Fprintln(stderr, envoy.Version(f.opts.DisableHotRestart))
		return 0
	}
	if f.config == "" {
		fmt.Fprintln(stderr, "mosnlite: -c/--config-path is required (MOSN's JSON; --config-yaml is not supported)")
		return 1
	}
	if f.mode == modeValidate {
		// Envoy's validate: no hot restart, no sockets, "OK" on stdout.
		cfg, _, err := loadConfig(f.config)
		if err != nil {
			printConfigError(stderr, f.config, err)
			return 1
		}
		printWarnings(stderr, cfg)
		fmt.Fprintf(stdout, "configuration '%s' OK\n", f.config)
		return 0
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
	ov, err := f.logOverrides()
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	lg, err := newLogs(cfg, pid, stdout, stderr, ov)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: logging: %v\n", err)
		return 1
	}
	defer lg.close()
	lg.warn(cfg)
	if f.enableCoreDump {
		lg.process.Warn("--enable-core-dump: ignored by mosnlite; for a core dump on a crash run it with GOTRACEBACK=crash and ulimit -c unlimited")
	}
	procs, governed := setProcs(cfg, f.concurrency)
	defer governProcs(lg.process, procs, governed)()
	bi := buildInfo()
	srv, err := server.New(server.Options{
		ConfigPath: path, Config: cfg, Build: bi.BuildInfo,
		Log: lg.process, ServerLogs: lg.servers, CommandLine: os.Args, PID: pid,
		Envoy:              &server.EnvoyOptions{Options: f.opts},
		ExecTime:           execTime,
		CommandLineOptions: f.commandLineOptions(path, procs),
		Stdout:             stdout, Stderr: stderr,
		// Envoy's --file-flush-interval-msec: how often access logs are written.
		AccessLogFlush: f.fileFlushInterval,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite: %v\n", err)
		return 1
	}
	if f.mode == modeInitOnly {
		if err := srv.Init(); err != nil {
			lg.process.WithError(err).Error("init_only: initialization failed")
			fmt.Fprintf(stderr, "mosnlite: %v\n", err)
			return 1
		}
		lg.process.Info("init_only: initialized; exiting")
		return 0
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	lg.process.WithFields(logrus.Fields{"version": bi.String(), "config": path, "restart_epoch": f.opts.RestartEpoch}).Info("starting (Envoy-compatible command line)")
	if err := srv.Start(context.Background()); err != nil {
		lg.startFailed(err, stderr)
		return 1
	}
	pf := pidFile{path: cfg.Pid}
	pf.serving(lg.process, pid)
	code, stoppedHere := serveLoop(srv, sigs, lg, loopHooks{
		stop: srv.Shutdown,
		hup: func() {
			// Envoy ignores SIGHUP: restarts come from the hot-restarter.
			lg.process.Info("SIGHUP ignored: with the Envoy command line, restarts come from the hot-restarter")
		},
	})
	if stoppedHere {
		pf.stopped(lg.process, pid)
	}
	return code
}

// logOverrides turns Envoy's logging flags into overrides of the config.
func (f envoyFlags) logOverrides() (logOverrides, error) {
	ov := logOverrides{path: f.logPath, pattern: f.logFormat}
	if f.logLevel != "" {
		l, err := envoyLogLevel(f.logLevel)
		if err != nil {
			return ov, fmt.Errorf("--log-level: %w", err)
		}
		ov.level = &l
	}
	if f.componentLogLevel != "" {
		c, err := parseComponentLogLevels(f.componentLogLevel)
		if err != nil {
			return ov, fmt.Errorf("--component-log-level: %w", err)
		}
		ov.components = c
	}
	return ov, nil
}

// commandLineOptions is what /server_info shows of the command line.
func (f envoyFlags) commandLineOptions(configPath string, procs int) service.CommandLineOptions {
	mode := map[string]string{modeServe: "Serve", modeValidate: "Validate", modeInitOnly: "InitOnly"}[f.mode]
	strategy := "Gradual"
	if f.opts.DrainStrategy == envoy.DrainImmediate {
		strategy = "Immediate"
	}
	level := f.logLevel
	if level == "" {
		level = "info"
	}
	return service.CommandLineOptions{
		ServiceCluster: f.serviceCluster, ServiceNode: f.serviceNode, ServiceZone: f.serviceZone,
		LogLevel: level, ComponentLogLevel: f.componentLogLevel, LogPath: f.logPath, LogFormat: f.logFormat,
		Concurrency: procs, Mode: mode, LocalAddressIPVersion: f.localAddressIPVer,
		FileFlushInterval: f.fileFlushInterval, ConfigPath: configPath, AdminAddressPath: f.opts.AdminAddressPath,
		DrainTime: f.opts.DrainTime, ParentShutdownTime: f.opts.ParentShutdownTime, DrainStrategy: strategy,
		DisableHotRestart: f.opts.DisableHotRestart, EnableCoreDump: f.enableCoreDump,
	}
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
