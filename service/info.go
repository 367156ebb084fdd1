// Package service serves mosnlite's service ports: the admin JSON API, pprof
// and Prometheus metrics, each an http.Handler run by a Server on a listener
// that the caller owns (and may have inherited from a previous process).
package service

import "time"

// Info is what the admin API reads from and asks of the running process.
// The server package implements it.
type Info interface {
	ServerInfo() ServerInfo
	// Listeners lists every listener, proxy and service, with its real bound address.
	Listeners() []ListenerInfo
	// ConfigDump returns the effective configuration as JSON.
	ConfigDump() ([]byte, error)
	// Ready reports whether the process serves traffic (running, not draining).
	Ready() bool
	// Quit begins a graceful stop. The admin API calls it after it has answered,
	// in its own goroutine, so it may block until the admin server has shut down.
	Quit()
	// DrainListeners begins draining the proxy listeners. The admin API calls it
	// before answering: it must not wait for the admin server to shut down.
	DrainListeners()
	// HotRestartVersion is the compatibility string of the handoff protocol.
	HotRestartVersion() string
}

// ServerInfo describes the running process and its lineage of upgrades.
type ServerInfo struct {
	PID       int
	Version   string
	Commit    string
	GoVersion string
	// State is "starting", "running" or "draining".
	State string
	// Generation counts processes since the first start: 1, 2, 3, …
	Generation int
	// DrainingPID is the old process still draining after a handoff, 0 if none.
	DrainingPID int
	// DrainingPIDElsewhere: that process is in another PID namespace, and
	// DrainingPID is the pid it reports there.
	DrainingPIDElsewhere bool
	// Instance is the name whoever started this process gave it ("" for none).
	Instance string
	// StartTime is when this process started; FirstStartTime when generation 1
	// did (zero means the same as StartTime).
	StartTime      time.Time
	FirstStartTime time.Time
	// Envoy compatibility.
	RestartEpoch      int
	BaseID            int
	HotRestartVersion string
	CommandLine       []string
	// Options are the rest of Envoy's command line, as /server_info shows it.
	Options CommandLineOptions
}

// CommandLineOptions are Envoy's command-line options beyond the restart
// epoch and base id, for /server_info (command_line_options and node). The
// zero value (a MOSN-style process) shows nothing.
type CommandLineOptions struct {
	ServiceCluster, ServiceNode, ServiceZone string // --service-cluster, --service-node, --service-zone
	LogLevel, ComponentLogLevel              string // -l, --component-log-level
	LogPath, LogFormat                       string // --log-path, --log-format
	Concurrency                              int    // --concurrency (the GOMAXPROCS it set)
	Mode                                     string // Envoy's enum name: Serve, Validate, InitOnly
	LocalAddressIPVersion                    string // v4 or v6
	FileFlushInterval                        time.Duration
	ConfigPath, AdminAddressPath             string
	DrainTime, ParentShutdownTime            time.Duration
	DrainStrategy                            string // Envoy's enum name: Gradual, Immediate
	DisableHotRestart, EnableCoreDump        bool
}

// ListenerInfo is one listener as /listeners shows it.
type ListenerInfo struct {
	Name    string
	Kind    string // "server" or "service"
	Network string // "tcp" or "unix"
	Address string // the real bound address: "127.0.0.1:1234", "[::1]:80" or a socket path
}
