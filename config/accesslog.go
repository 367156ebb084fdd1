package config

import (
	"errors"
	"strings"
)

// DefaultAccessLogFormat is MOSN's access log format, used when log_format
// is empty.
const DefaultAccessLogFormat = "%start_time% %trace_id%  %connection_id% %upstream_connection_id% " +
	"%request_received_duration% %response_received_duration% %bytes_sent% %bytes_received% %protocol% " +
	"%response_code% %duration% %response_flag% %response_code% %upstream_local_address% " +
	"%downstream_local_address% %downstream_remote_address% %upstream_host%"

// AccessLogEntry is one piece of an access log format: literal Text, or
// the value of the variable Var (MOSN's %name%).
type AccessLogEntry struct {
	Text string
	Var  string
}

// Access log format errors, as MOSN reports them.
var (
	errEmptyVarDef    = errors.New("access log format: empty variable definition (%%)")
	errUnclosedVarDef = errors.New("access log format: unclosed variable definition (a % without its closing %)")
)

// ParseAccessLogFormat splits a MOSN access log format into literal text and
// %variable% references, as MOSN does: "\%" is a literal percent sign (the
// backslash is kept, as MOSN keeps it), "%%" is an error, and so is a % left
// open. An empty format is MOSN's default format.
func ParseAccessLogFormat(format string) ([]AccessLogEntry, error) {
	if format == "" {
		format = DefaultAccessLogFormat
	}
	var out []AccessLogEntry
	inVar := false
	last := -1 // index of the last unescaped %
	for pos := 0; pos < len(format); pos++ {
		if format[pos] != '%' || (pos > 0 && format[pos-1] == '\\') {
			continue
		}
		if inVar {
			if pos == last+1 {
				return nil, errEmptyVarDef
			}
			out = append(out, AccessLogEntry{Var: format[last+1 : pos]})
		} else if pos > last+1 {
			out = append(out, AccessLogEntry{Text: format[last+1 : pos]})
		}
		last = pos
		inVar = !inVar
	}
	if inVar {
		return nil, errUnclosedVarDef
	}
	if last < len(format)-1 {
		out = append(out, AccessLogEntry{Text: format[last+1:]})
	}
	return out, nil
}

// KnownAccessLogVariable reports whether MOSN defines the variable for an
// HTTP request (MOSN writes "-" for any other).
func KnownAccessLogVariable(name string) bool {
	switch name {
	case "start_time", "request_received_duration", "response_received_duration",
		"request_finished_duration", "process_time_duration", "bytes_sent", "bytes_received",
		"protocol", "response_code", "duration", "response_flag", "response_flags",
		"upstream_local_address", "downstream_local_address", "downstream_remote_address",
		"upstream_host", "upstream_transport_failure_reason", "upstream_cluster",
		"requested_server_name", "route_name", "trace_id", "connection_id", "upstream_connection_id",
		"request_scheme", "request_method", "request_length", "request_path",
		"request_path_original", "request_arg", "request_uri", "listener_name", "listener_port":
		return true
	}
	for _, prefix := range []string{"request_header_", "response_header_", "cookie_", "request_arg_"} {
		if strings.HasPrefix(name, prefix) && len(name) > len(prefix) {
			return true
		}
	}
	return false
}
