package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mosnlite/mosnlite/reconfig/envoy"
)

// Envoy's --mode values.
const (
	modeServe    = "serve"
	modeValidate = "validate"
	modeInitOnly = "init_only"
)

// envoyFlags is Envoy's command line, with Envoy's names, defaults and
// meaning: the hot-restart flags (envoy.Options), and the common ones a
// start script passes.
type envoyFlags struct {
	config string
	mode   string
	opts   envoy.Options

	logLevel          string // "" unless -l/--log-level was given
	componentLogLevel string
	logPath           string
	logFormat         string
	concurrency       int // 0 unless --concurrency was given
	serviceCluster    string
	serviceNode       string
	serviceZone       string
	localAddressIPVer string
	fileFlushInterval time.Duration
	enableCoreDump    bool
	version           bool
}

// unsupportedEnvoyFlag is an Envoy flag mosnlite refuses, with what it does
// in Envoy. A bool flag does not take its value from the next argument.
type unsupportedEnvoyFlag struct {
	name, what string
	isBool     bool
}

// unsupportedEnvoyFlags lists Envoy's flags that mosnlite refuses.
func unsupportedEnvoyFlags() []unsupportedEnvoyFlag {
	return []unsupportedEnvoyFlag{
		{"config-yaml", "an inline YAML bootstrap; mosnlite reads MOSN's JSON from -c", false},
		{"bootstrap-version", "the bootstrap API version", false},
		{"allow-unknown-fields", "accepting unknown config fields; mosnlite always refuses them", true},
		{"allow-unknown-static-fields", "accepting unknown config fields; mosnlite always refuses them", true},
		{"reject-unknown-dynamic-fields", "checks of dynamic (xDS) config, which mosnlite has not", true},
		{"ignore-unknown-dynamic-fields", "checks of dynamic (xDS) config, which mosnlite has not", true},
		{"skip-deprecated-logs", "silencing deprecation logs", true},
		{"log-format-escaped", "escaping control characters in logs", true},
		{"log-format-prefix-with-location", "source locations in logs", false},
		{"enable-fine-grain-logging", "per-file log levels", true},
		{"cpuset-threads", "sizing workers by the cpuset; mosnlite's Go runtime follows the CPU quota", true},
		{"enable-mutex-tracing", "mutex contention tracing", true},
		{"disable-extensions", "disabling Envoy extensions", false},
		{"stats-tag", "extra stats tags", false},
		{"skip-hot-restart-on-no-parent", "starting fresh when the parent is gone", true},
		{"skip-hot-restart-parent-stats", "not merging the parent's stats", true},
		{"max-obj-name-len", "a limit of Envoy's shared-memory stats", false},
		{"max-stats", "a limit of Envoy's shared-memory stats", false},
		{"v2-config-only", "the v2 bootstrap switch", true},
		{"allow-deprecated-v1-api", "the v1 config", true},
		{"use-fake-symbol-table", "the stats symbol table switch", false},
	}
}

// errEnvoyHelp is returned for -h/--help: print usage and exit 0.
var errEnvoyHelp = errors.New("help requested")

// parseEnvoyFlags parses Envoy's command line. Errors say which flag is
// wrong and why; the caller exits 1, as Envoy does.
func parseEnvoyFlags(args []string) (envoyFlags, error) {
	f := defaultEnvoyFlags()
	fs := newEnvoyFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, errEnvoyHelp
		}
		return f, envoyFlagError(err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch f.mode {
	case modeServe, modeValidate, modeInitOnly:
	default:
		return f, fmt.Errorf("--mode: unknown mode %q (want serve, validate or init_only)", f.mode)
	}
	switch f.localAddressIPVer {
	case "v4", "v6":
	default:
		return f, fmt.Errorf("--local-address-ip-version: unknown IP address version %q (want v4 or v6)", f.localAddressIPVer)
	}
	if f.logLevel != "" {
		if _, err := envoyLogLevel(f.logLevel); err != nil {
			return f, fmt.Errorf("--log-level: %w", err)
		}
	}
	if f.componentLogLevel != "" {
		if _, err := parseComponentLogLevels(f.componentLogLevel); err != nil {
			return f, fmt.Errorf("--component-log-level: %w", err)
		}
	}
	if f.logFormat != "" {
		if _, err := newSpdlogFormatter(f.logFormat, 0); err != nil {
			return f, fmt.Errorf("--log-format: %w", err)
		}
	}
	return f, nil
}

// defaultEnvoyFlags are Envoy's defaults.
func defaultEnvoyFlags() envoyFlags {
	return envoyFlags{opts: envoy.DefaultOptions(), mode: modeServe, localAddressIPVer: "v4", fileFlushInterval: 10 * time.Second}
}

// newEnvoyFlagSet registers Envoy's flags on a new FlagSet writing into f.
// Go's flag package takes -name and --name, "-name value" and "-name=value",
// as Envoy's does.
func newEnvoyFlagSet(f *envoyFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("mosnlite", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&f.config, "c", "", "path to the configuration file (MOSN's JSON)")
	fs.StringVar(&f.config, "config-path", "", "path to the configuration file (same as -c)")
	fs.StringVar(&f.mode, "mode", f.mode, "serve (default), validate (check the config and exit) or init_only (initialize everything, then exit)")
	fs.StringVar(&f.logLevel, "l", "", "log level: trace, debug, info, warning (warn), error, critical or off")
	fs.StringVar(&f.logLevel, "log-level", "", "log level (same as -l)")
	fs.StringVar(&f.componentLogLevel, "component-log-level", "", "comma-separated component:level pairs, e.g. upstream:debug,connection:trace")
	fs.StringVar(&f.logPath, "log-path", "", "log file, reopened on SIGUSR1 (default: the config's default_log_path, stderr by default)")
	fs.StringVar(&f.logFormat, "log-format", "", "log line format in spdlog syntax, e.g. \"[%Y-%m-%d %T.%e][%t][%l][%n] %v\"")
	fs.Var(positiveInt{&f.concurrency}, "concurrency", "number of threads running Go code (GOMAXPROCS); 0 means 1, as Envoy")
	fs.StringVar(&f.serviceCluster, "service-cluster", "", "local service cluster name, shown in /server_info")
	fs.StringVar(&f.serviceNode, "service-node", "", "local service node name, shown in /server_info")
	fs.StringVar(&f.serviceZone, "service-zone", "", "local service zone, shown in /server_info")
	fs.StringVar(&f.localAddressIPVer, "local-address-ip-version", f.localAddressIPVer, "v4 or v6")
	fs.Var(millisValue(&f.fileFlushInterval), "file-flush-interval-msec", "interval of access log flushes, in milliseconds")
	fs.BoolVar(&f.enableCoreDump, "enable-core-dump", false, "accepted and ignored (see README)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")

	o := &f.opts
	fs.IntVar(&o.RestartEpoch, "restart-epoch", o.RestartEpoch, "hot restart epoch #")
	fs.IntVar(&o.BaseID, "base-id", o.BaseID, "base ID so that several instances can run on one host")
	fs.BoolVar(&o.UseDynamicBaseID, "use-dynamic-base-id", o.UseDynamicBaseID,
		"choose a free base ID dynamically; supersedes --base-id; not allowed with a restart epoch above 0")
	fs.StringVar(&o.BaseIDPath, "base-id-path", o.BaseIDPath, "path to which the base ID is written")
	fs.BoolVar(&o.HotRestartVersion, "hot-restart-version", o.HotRestartVersion, "print the hot restart compatibility version and exit")
	fs.BoolVar(&o.DisableHotRestart, "disable-hot-restart", o.DisableHotRestart, "disable hot restart functionality")
	fs.Var(secondsValue(&o.DrainTime), "drain-time-s", "hot restart drain time in seconds")
	fs.Var(secondsValue(&o.ParentShutdownTime), "parent-shutdown-time-s", "hot restart parent shutdown time in seconds")
	fs.StringVar(&o.DrainStrategy, "drain-strategy", o.DrainStrategy, "hot restart drain sequence behaviour, one of 'gradual' or 'immediate'")
	fs.StringVar(&o.SocketPath, "socket-path", o.SocketPath, "path prefix of the hot restart sockets; a leading @ means the abstract namespace")
	fs.Var(modeValue{&o.SocketMode}, "socket-mode", "hot restart socket file permission (octal)")
	fs.StringVar(&o.AdminAddressPath, "admin-address-path", o.AdminAddressPath, "path to which the admin address is written")

	for _, u := range unsupportedEnvoyFlags() {
		fs.Var(u, u.name, "not supported by mosnlite: "+u.what)
	}
	return fs
}

// envoyFlagError turns the flag package's error into a message that names
// the flag with Envoy's double dash.
func envoyFlagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s (see mosnlite --help)", name)
	}
	if rest, ok := strings.CutPrefix(msg, "invalid boolean flag "); ok {
		return errors.New("--" + rest)
	}
	return errors.New(strings.Replace(msg, " for flag -", " for flag --", 1))
}

// envoyUsage is printed for --help in Envoy mode.
func envoyUsage(w io.Writer) {
	fmt.Fprint(w, `Envoy's command line (hot restart by epochs), exit 0 or 1 as Envoy:

  mosnlite -c FILE [--restart-epoch N] [--base-id N] [flags]

`)
	f := defaultEnvoyFlags()
	fs := newEnvoyFlagSet(&f)
	fs.SetOutput(w)
	fs.VisitAll(func(fl *flag.Flag) {
		if _, no := fl.Value.(unsupportedEnvoyFlag); no {
			return
		}
		dash := "--"
		if len(fl.Name) == 1 {
			dash = "-"
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" {
			def = " (default " + fl.DefValue + ")"
		}
		fmt.Fprintf(w, "  %s%s\n      %s%s\n", dash, fl.Name, fl.Usage, def)
	})
}

func (u unsupportedEnvoyFlag) String() string   { return "" }
func (u unsupportedEnvoyFlag) IsBoolFlag() bool { return u.isBool }
func (u unsupportedEnvoyFlag) Set(string) error {
	return fmt.Errorf("not supported by mosnlite (in Envoy: %s)", u.what)
}

// unitValue is a time.Duration written on the command line as a whole
// number of units (Envoy's --drain-time-s in seconds, --file-flush-interval-msec
// in milliseconds).
type unitValue struct {
	d    *time.Duration
	unit time.Duration
	name string // "seconds", "milliseconds"
}

func secondsValue(d *time.Duration) unitValue { return unitValue{d, time.Second, "seconds"} }
func millisValue(d *time.Duration) unitValue  { return unitValue{d, time.Millisecond, "milliseconds"} }

func (v unitValue) String() string {
	if v.d == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v.d/v.unit), 10)
}

func (v unitValue) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number of %s, got %q", v.name, s)
	}
	*v.d = time.Duration(n) * v.unit
	return nil
}

// modeValue is an os.FileMode written in octal.
type modeValue struct{ m *os.FileMode }

func (v modeValue) String() string {
	if v.m == nil {
		return "600"
	}
	return strconv.FormatUint(uint64(*v.m), 8)
}

func (v modeValue) Set(s string) error {
	m, err := envoy.ParseSocketMode(s)
	if err != nil {
		return err
	}
	*v.m = m
	return nil
}

// positiveInt is an unsigned count (Envoy's uint32); 0 becomes 1 when used.
type positiveInt struct{ n *int }

func (v positiveInt) String() string {
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v positiveInt) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number, got %q", s)
	}
	*v.n = max(int(n), 1) // Envoy: "If set to zero, Envoy will still run one worker thread"
	return nil
}
