package service

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"time"
)

// serverInfoJSON is the body of /server_info: mosnlite's own fields plus
// Envoy's (state, uptime_current_epoch, uptime_all_epochs,
// hot_restart_version, command_line_options).
type serverInfoJSON struct {
	PID         int    `json:"pid"`
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	GoVersion   string `json:"go_version"`
	State       string `json:"state"`
	Generation  int    `json:"generation"`
	DrainingPID int    `json:"draining_pid"`
	// DrainingPIDNamespace is "other" when the draining process runs in
	// another PID namespace (another container): draining_pid is then the
	// pid it has there, which means nothing in ours.
	DrainingPIDNamespace string `json:"draining_pid_namespace,omitempty"`
	// Instance is what started this process calls it (mosnlite's
	// MOSNLITE_INSTANCE, or a SidecarSet slot's version): how a process
	// recognises its own among processes of other containers.
	Instance       string `json:"instance,omitempty"`
	StartTime      string `json:"start_time,omitempty"`       // RFC 3339
	FirstStartTime string `json:"first_start_time,omitempty"` // RFC 3339
	// Uptime of this process and of the whole lineage since generation 1.
	UptimeSeconds          float64 `json:"uptime_seconds"`
	UptimeAllEpochsSeconds float64 `json:"uptime_all_epochs_seconds"`
	// The same as Envoy writes them: protobuf JSON durations in whole seconds ("12s").
	UptimeCurrentEpoch string                 `json:"uptime_current_epoch"`
	UptimeAllEpochs    string                 `json:"uptime_all_epochs"`
	HotRestartVersion  string                 `json:"hot_restart_version"`
	CommandLineOptions commandLineOptionsJSON `json:"command_line_options"`
	CommandLine        []string               `json:"command_line"`
	// Node is Envoy's node: --service-node, --service-cluster, --service-zone.
	Node *nodeJSON `json:"node,omitempty"`
}

// commandLineOptionsJSON is Envoy's CommandLineOptions message as protobuf's
// JSON mapping writes it (durations as "600s"); fields of a MOSN-style
// process that Envoy's command line did not set are left out.
type commandLineOptionsJSON struct {
	RestartEpoch int `json:"restart_epoch"`
	// BaseID is a string as in Envoy's output, where it is a uint64 and
	// protobuf's JSON mapping writes 64-bit integers as strings.
	BaseID                string `json:"base_id"`
	Concurrency           int    `json:"concurrency,omitempty"`
	ConfigPath            string `json:"config_path,omitempty"`
	AdminAddressPath      string `json:"admin_address_path,omitempty"`
	LocalAddressIPVersion string `json:"local_address_ip_version,omitempty"`
	LogLevel              string `json:"log_level,omitempty"`
	ComponentLogLevel     string `json:"component_log_level,omitempty"`
	LogFormat             string `json:"log_format,omitempty"`
	LogPath               string `json:"log_path,omitempty"`
	ServiceCluster        string `json:"service_cluster,omitempty"`
	ServiceNode           string `json:"service_node,omitempty"`
	ServiceZone           string `json:"service_zone,omitempty"`
	Mode                  string `json:"mode,omitempty"`
	DisableHotRestart     bool   `json:"disable_hot_restart,omitempty"`
	EnableCoreDump        bool   `json:"enable_core_dump,omitempty"`
	FileFlushInterval     string `json:"file_flush_interval,omitempty"`
	DrainTime             string `json:"drain_time,omitempty"`
	ParentShutdownTime    string `json:"parent_shutdown_time,omitempty"`
	DrainStrategy         string `json:"drain_strategy,omitempty"`
}

type nodeJSON struct {
	ID       string        `json:"id,omitempty"`
	Cluster  string        `json:"cluster,omitempty"`
	Locality *localityJSON `json:"locality,omitempty"`
}

type localityJSON struct {
	Zone string `json:"zone"`
}

func newCommandLineOptionsJSON(si ServerInfo) (commandLineOptionsJSON, *nodeJSON) {
	o := si.Options
	out := commandLineOptionsJSON{
		RestartEpoch:          si.RestartEpoch,
		BaseID:                strconv.Itoa(si.BaseID),
		Concurrency:           o.Concurrency,
		ConfigPath:            o.ConfigPath,
		AdminAddressPath:      o.AdminAddressPath,
		LocalAddressIPVersion: o.LocalAddressIPVersion,
		LogLevel:              o.LogLevel,
		ComponentLogLevel:     o.ComponentLogLevel,
		LogFormat:             o.LogFormat,
		LogPath:               o.LogPath,
		ServiceCluster:        o.ServiceCluster,
		ServiceNode:           o.ServiceNode,
		ServiceZone:           o.ServiceZone,
		Mode:                  o.Mode,
		DisableHotRestart:     o.DisableHotRestart,
		EnableCoreDump:        o.EnableCoreDump,
		DrainStrategy:         o.DrainStrategy,
	}
	if o.Mode != "" { // durations only for a process started with Envoy's command line
		out.FileFlushInterval = protoDuration(o.FileFlushInterval)
		out.DrainTime = protoDuration(o.DrainTime)
		out.ParentShutdownTime = protoDuration(o.ParentShutdownTime)
	}
	if o.ServiceNode == "" && o.ServiceCluster == "" && o.ServiceZone == "" {
		return out, nil
	}
	n := &nodeJSON{ID: o.ServiceNode, Cluster: o.ServiceCluster}
	if o.ServiceZone != "" {
		n.Locality = &localityJSON{Zone: o.ServiceZone}
	}
	return out, n
}

// protoDuration writes d as protobuf's JSON mapping does: seconds, with 0,
// 3, 6 or 9 fractional digits ("10s", "0.500s").
func protoDuration(d time.Duration) string {
	sec, ns := int64(d/time.Second), int64(d%time.Second)
	switch {
	case ns == 0:
		return fmt.Sprintf("%ds", sec)
	case ns%1e6 == 0:
		return fmt.Sprintf("%d.%03ds", sec, ns/1e6)
	case ns%1e3 == 0:
		return fmt.Sprintf("%d.%06ds", sec, ns/1e3)
	default:
		return fmt.Sprintf("%d.%09ds", sec, ns)
	}
}

// newServerInfoJSON renders si as seen at now. fallbackHRV fills an empty
// HotRestartVersion.
func newServerInfoJSON(si ServerInfo, now time.Time, fallbackHRV string) serverInfoJSON {
	first := si.FirstStartTime
	if first.IsZero() || (!si.StartTime.IsZero() && first.After(si.StartTime)) {
		first = si.StartTime
	}
	cur, all := uptime(si.StartTime, now), uptime(first, now)
	hrv := si.HotRestartVersion
	if hrv == "" {
		hrv = fallbackHRV
	}
	cmd := si.CommandLine
	if cmd == nil {
		cmd = []string{}
	}
	opts, node := newCommandLineOptionsJSON(si)
	return serverInfoJSON{
		PID:                    si.PID,
		Version:                si.Version,
		Commit:                 si.Commit,
		GoVersion:              si.GoVersion,
		State:                  si.State,
		Generation:             si.Generation,
		DrainingPID:            si.DrainingPID,
		DrainingPIDNamespace:   map[bool]string{true: "other"}[si.DrainingPIDElsewhere],
		Instance:               si.Instance,
		StartTime:              formatTime(si.StartTime),
		FirstStartTime:         formatTime(first),
		UptimeSeconds:          roundMillis(cur.Seconds()),
		UptimeAllEpochsSeconds: roundMillis(all.Seconds()),
		UptimeCurrentEpoch:     envoyDuration(cur),
		UptimeAllEpochs:        envoyDuration(all),
		HotRestartVersion:      hrv,
		CommandLineOptions:     opts,
		CommandLine:            cmd,
		Node:                   node,
	}
}

// uptime is now-since, zero if since is unset or in the future.
func uptime(since, now time.Time) time.Duration {
	if since.IsZero() || now.Before(since) {
		return 0
	}
	return now.Sub(since)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func roundMillis(s float64) float64 { return math.Round(s*1000) / 1000 }

// envoyDuration writes d in whole seconds with an "s" suffix, as Envoy does.
func envoyDuration(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d/time.Second))
}

// listenerJSON is one entry of the plain /listeners list.
type listenerJSON struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Network string `json:"network"`
	Address string `json:"address"`
}

// envoyListeners is the body of /listeners?format=json.
type envoyListeners struct {
	ListenerStatuses []envoyListenerStatus `json:"listener_statuses"`
}

type envoyListenerStatus struct {
	Name         string       `json:"name"`
	LocalAddress envoyAddress `json:"local_address"`
}

// envoyAddress is Envoy's Address: a socket address, or a pipe for unix sockets.
type envoyAddress struct {
	SocketAddress *envoySocketAddress `json:"socket_address,omitempty"`
	Pipe          *envoyPipe          `json:"pipe,omitempty"`
}

type envoySocketAddress struct {
	Address   string `json:"address"`
	PortValue int    `json:"port_value"`
}

type envoyPipe struct {
	Path string `json:"path"`
}

func newEnvoyListeners(ls []ListenerInfo) envoyListeners {
	out := envoyListeners{ListenerStatuses: make([]envoyListenerStatus, 0, len(ls))}
	for _, l := range ls {
		out.ListenerStatuses = append(out.ListenerStatuses, envoyListenerStatus{
			Name:         l.Name,
			LocalAddress: newEnvoyAddress(l.Network, l.Address),
		})
	}
	return out
}

// newEnvoyAddress splits "host:port" into Envoy's socket_address; a unix
// socket becomes a pipe. An address that does not split is kept whole, port 0.
func newEnvoyAddress(network, address string) envoyAddress {
	if network == "unix" {
		return envoyAddress{Pipe: &envoyPipe{Path: address}}
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return envoyAddress{SocketAddress: &envoySocketAddress{Address: address}}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return envoyAddress{SocketAddress: &envoySocketAddress{Address: address}}
	}
	return envoyAddress{SocketAddress: &envoySocketAddress{Address: host, PortValue: int(p)}}
}
