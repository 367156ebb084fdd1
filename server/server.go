// Package server wires one mosnlite process: it builds the data plane and the
// service ports from a config, takes the listening sockets over from a running
// predecessor (or binds them fresh), serves, and hands everything to a
// successor when one starts. The lifecycle is one (lifecycle.go, handover.go);
// the two handoff styles, MOSN's reconfig.sock and Envoy's restart epochs,
// differ only behind a small seam (seam.go) with one adapter each.
package server

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/listener"
	"github.com/mosnlite/mosnlite/listener/ident"
	"github.com/mosnlite/mosnlite/reconfig/wire"
	"github.com/mosnlite/mosnlite/server/accesslog"
	"github.com/mosnlite/mosnlite/server/cluster"
	"github.com/mosnlite/mosnlite/server/tlsconf"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// State is where the process is in its life.
type State string

const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateDraining State = "draining"
	StateStopped  State = "stopped"
)

// BuildInfo describes the binary.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// Options are what the caller (cmd/) decides for a process.
type Options struct {
	// ConfigPath is the absolute path of the config file, "" for the embedded default.
	ConfigPath string
	Config     *config.Config
	Build      BuildInfo
	// Log is the process logger; ServerLogs holds one logger per servers[] entry by
	// index (missing entries fall back to Log).
	Log        *logrus.Entry
	ServerLogs []*logrus.Entry
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time
	// CommandLine is recorded for /server_info.
	CommandLine []string
	// CommandLineOptions are the options of Envoy's command line that
	// /server_info shows (service cluster, node and zone, log settings, …).
	CommandLineOptions service.CommandLineOptions
	// PID is this process's pid (injected for tests and logs).
	PID int
	// Envoy carries the hot-restart compatibility settings; nil for MOSN-style upgrades.
	Envoy *EnvoyOptions
	// ReadyBy, if set, is when whoever started this process stops waiting for
	// it: a successor that cannot ack its predecessor by then gives up rather
	// than take over after its caller has reported failure.
	ReadyBy time.Time
	// ExecTime is when the process started (cmd/ takes it first thing): the
	// start of its generation and of its handoff (exec → ack). Zero: when
	// New is called.
	ExecTime time.Time
	// Events are told of the lifecycle's turns (see Events).
	Events Events
	// Activated are listening sockets a process manager bound for this
	// process (socket activation). On a fresh start each is adopted by the
	// listener of its name or address, as an inherited socket is, and one
	// that matches no listener fails the start; a successor takes them over
	// with the others. When a predecessor hands its own sockets over they
	// are closed. Start owns the files.
	Activated []listener.Activated
	// Instance names this process for /server_info ("instance"), as
	// whatever started it sees it (a container slot, say); "" for none.
	Instance string
	// Carry, if set, says what a successor must be handed that it cannot
	// get otherwise (Manifest.Env: what the process manager gave only the
	// first process of the lineage); read at each handoff.
	Carry func() map[string]string
	// Stdout and Stderr are where an access log_path of "stdout" or
	// "stderr" writes (nil: the process's).
	Stdout, Stderr io.Writer
	// AccessLogFlush is how long an access log line may wait in memory
	// (0: accesslog.DefaultFlushInterval; Envoy's --file-flush-interval-msec).
	AccessLogFlush time.Duration
}

// Events are the lifecycle's notifications to the caller — the process
// manager adapters of cmd/ (sd_notify, the pid file) — and know nothing of
// any manager. Each may be nil. They run on the lifecycle's goroutines and
// must return quickly. Start returning nil is "serving"; the caller knows
// when it stops the process for good.
type Events struct {
	// OnUpgradeRequested: a process asks to take over, its pid as this
	// process sees it (0 for one in another PID namespace). A non-nil error
	// refuses it, and the asker is told why (MOSN style).
	OnUpgradeRequested func(newPID int) error
	// OnSuccessorTookOver: a successor acked, and this process stops
	// accepting and hands over. Called before the successor can serve its
	// service ports (it waits for what this process sends right after).
	OnSuccessorTookOver func(newPID int)
	// OnUpgradeFailed: a handoff failed before the ack; this process never
	// stopped serving (MOSN style).
	OnUpgradeFailed func(newPID int, err error)
	// OnServingAgain: the successor died within the watch period and this
	// process serves again, as the main process.
	OnServingAgain func(deadPID int)
	// OnPredecessorDone: the predecessor this process took over from has
	// finished draining (or went away); nothing runs beside this process.
	OnPredecessorDone func()
}

// effects are the side effects the lifecycle decides on, injected so that
// its state machine runs on fakes in tests.
type effects struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	alive func(pid int) bool // process liveness
	rand  func() uint64
	// style opens the handoff style (the predecessor and the endpoint).
	style func(s *Server) handoffStyle
}

func defaultEffects(opts Options) effects {
	fx := effects{now: opts.Clock, after: time.After, alive: wire.ProcessAlive, rand: rand.Uint64}
	if fx.now == nil {
		fx.now = time.Now
	}
	switch {
	case opts.Envoy != nil:
		fx.style = newEnvoyStyle
	case opts.Config != nil && opts.Config.UpgradeDisabled():
		fx.style = newNoUpgradeStyle
	default:
		fx.style = newMOSNStyle
	}
	return fx
}

// Server is one running mosnlite process.
type Server struct {
	opts  Options
	fx    effects
	style handoffStyle
	cfg   *config.Config
	log   *logrus.Entry
	reg   *stats.Registry
	m     *processMetrics
	// access are the access log files, shared by every plane of the
	// process; closed (flushed) when it stops.
	access *accesslog.Set

	udsDir string

	mu          sync.Mutex
	state       State
	generation  int
	firstStart  time.Time
	startTime   time.Time
	drainingPID int
	// drainingElsewhere: drainingPID is the pid the predecessor reports,
	// in a PID namespace of its own.
	drainingElsewhere bool
	carried           map[string]string // the predecessor's Manifest.Env
	// unclaimed: the predecessor's sockets our config has no more (closed
	// here; named in the ack so that it closes them too). Start's only.
	unclaimed []ident.Spec
	listeners *listener.Set
	plane     *plane // what serves now
	endpoint  endpoint
	pred      predecessor // while it drains into us, or watches us
	// exported and exportedHists are the counters and histograms sent in
	// the last manifest: what a successor already has.
	exported      []stats.Sample
	exportedHists []histsample.Histogram
	handover      *handover // the handover to a successor in progress
	// reverting is the revertDone of the last handover that ended in a
	// revert: closed once the process serves again (state Running). From
	// the handover's end to then, the state is still Draining.
	reverting <-chan struct{}
	// tickets are the lineage's TLS session ticket keys (tls.go).
	tickets *tlsconf.Ring

	quit     chan struct{} // closed to ask the process to stop gracefully
	quitOnce sync.Once
	done     chan struct{} // closed when the process has fully stopped
	doneOnce sync.Once
	exitErr  error
}

// plane is one generation of the data plane inside the process: the
// clusters and one part per listener. A revert (the successor died after
// the ack) builds a new plane on the same sockets while the old one drains.
type plane struct {
	clusters *cluster.Manager
	parts    []*part
}

// New checks the options and prepares a server; nothing is bound yet.
func New(opts Options) (*Server, error) {
	return newServer(opts, defaultEffects(opts))
}

func newServer(opts Options, fx effects) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("server: no config")
	}
	if opts.Log == nil {
		l := logrus.New()
		opts.Log = logrus.NewEntry(l)
	}
	udsDir := opts.Config.UDSDir
	if udsDir == "" && opts.Envoy == nil {
		udsDir = config.DefaultUDSDir(opts.ConfigPath)
		if err := config.CheckUDSDir(udsDir); err != nil {
			return nil, fmt.Errorf("server: uds_dir derived from the config file's location: %w; set a shorter uds_dir in the config", err)
		}
	}
	reg := stats.New()
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	s := &Server{
		access: accesslog.NewSet(stdout, stderr, accesslog.FileOptions{FlushInterval: opts.AccessLogFlush},
			opts.Log.WithField("component", "accesslog")),
		opts:       opts,
		fx:         fx,
		cfg:        opts.Config,
		log:        opts.Log.WithField("component", "server"),
		reg:        reg,
		m:          newProcessMetrics(reg),
		udsDir:     udsDir,
		state:      StateStarting,
		generation: 1,
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	now := s.fx.now()
	if !opts.ExecTime.IsZero() {
		now = opts.ExecTime
	}
	s.startTime, s.firstStart = now, now
	if err := s.initObservability(); err != nil {
		return nil, err
	}
	s.style = fx.style(s)
	return s, nil
}

// UDSDir is the directory holding reconfig.sock and listen.sock.
func (s *Server) UDSDir() string { return s.udsDir }

// Carried is what the predecessor handed over for the caller (its Carry),
// nil after a fresh start. Valid once Start has returned.
func (s *Server) Carried() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carried
}

// Done is closed once the process has stopped serving for good: after a
// successor took over and the drain finished, or after Shutdown.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the process stopped, nil for a clean stop.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

func (s *Server) setState(st State) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
	s.log.WithField("state", st).Info("state changed")
}

func (s *Server) getState() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Quit asks the process to stop gracefully, as SIGTERM does.
func (s *Server) Quit() {
	s.quitOnce.Do(func() { close(s.quit) })
}

// QuitRequested is closed when Quit has been called (by /quitquitquit or a signal).
func (s *Server) QuitRequested() <-chan struct{} { return s.quit }

func (s *Server) finish(err error) {
	s.doneOnce.Do(func() {
		s.mu.Lock()
		s.exitErr = err
		s.state = StateStopped
		s.mu.Unlock()
		s.m.live.Set(0)
		if err := s.access.Close(); err != nil {
			s.log.WithError(err).Warn("access logs: close")
		}
		close(s.done)
	})
}

func (s *Server) gracefulTimeout() time.Duration {
	var d time.Duration
	for _, sv := range s.cfg.Servers {
		if sv.GracefulTimeout.Duration > d {
			d = sv.GracefulTimeout.Duration
		}
	}
	if d <= 0 {
		d = config.DefaultGracefulTimeout
	}
	return d
}

func (s *Server) handoffTimeout() time.Duration {
	if d := s.cfg.HandoffTimeout.Duration; d > 0 {
		return d
	}
	return config.DefaultHandoffTimeout
}

// watchPeriod is upgrade_watch_period (default 5s; 0 turns the watch off).
func (s *Server) watchPeriod() time.Duration {
	if w := s.cfg.UpgradeWatchPeriod; w != nil {
		return w.Duration
	}
	return config.DefaultUpgradeWatchPeriod
}

func (s *Server) serverLog(i int) *logrus.Entry {
	if i < len(s.opts.ServerLogs) && s.opts.ServerLogs[i] != nil {
		return s.opts.ServerLogs[i]
	}
	return s.opts.Log
}

// parts returns what serves now.
func (s *Server) parts() []*part {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plane == nil {
		return nil
	}
	return append([]*part(nil), s.plane.parts...)
}

// ReopenLogs flushes the access logs and opens their files again (SIGUSR1,
// after logrotate moved them).
func (s *Server) ReopenLogs() error {
	if err := s.access.Reopen(); err != nil {
		return fmt.Errorf("server: access logs: %w", err)
	}
	return nil
}
