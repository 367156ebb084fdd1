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
	PID            int    `json:"pid"`
	Version        string `json:"version"`
	Commit         string `json:"commit"`
	GoVersion      string `json:"go_version"`
	State          string `json:"state"`
	Generation     int    `json:"generation"`
	DrainingPID    int    `json:"draining_pid"`
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
}

type commandLineOptionsJSON struct {
	RestartEpoch int `json:"restart_epoch"`
	// BaseID is a string as in Envoy's output, where it is a uint64 and
	// protobuf's JSON mapping writes 64-bit integers as strings.
	BaseID string `json:"base_id"`
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
	return serverInfoJSON{
		PID:                    si.PID,
		Version:                si.Version,
		Commit:                 si.Commit,
		GoVersion:              si.GoVersion,
		State:                  si.State,
		Generation:             si.Generation,
		DrainingPID:            si.DrainingPID,
		StartTime:              formatTime(si.StartTime),
		FirstStartTime:         formatTime(first),
		UptimeSeconds:          roundMillis(cur.Seconds()),
		UptimeAllEpochsSeconds: roundMillis(all.Seconds()),
		UptimeCurrentEpoch:     envoyDuration(cur),
		UptimeAllEpochs:        envoyDuration(all),
		HotRestartVersion:      hrv,
		CommandLineOptions: commandLineOptionsJSON{
			RestartEpoch: si.RestartEpoch,
			BaseID:       strconv.Itoa(si.BaseID),
		},
		CommandLine: cmd,
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
