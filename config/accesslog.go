package config

import (
	"errors"
	"fmt"
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

// Access log variables mosnlite fills: MOSN's names, for an HTTP request
// and, where they apply, a tcp_proxy session (the others print "-" there,
// as in MOSN). trace_id prints "-": mosnlite has no tracer (MOSN without
// tracing prints the same).
var accessLogVariables = map[string]bool{
	"start_time": true, "duration": true, "request_finished_duration": true,
	"request_received_duration": true, "response_received_duration": true, "process_time_duration": true,
	"bytes_sent": true, "bytes_received": true, "protocol": true, "response_code": true,
	"response_flag": true, "response_flags": true, "upstream_transport_failure_reason": true,
	"upstream_local_address": true, "downstream_local_address": true, "downstream_remote_address": true,
	"upstream_host": true, "upstream_cluster": true, "connection_id": true, "upstream_connection_id": true,
	"listener_name": true, "listener_port": true, "trace_id": true,
	"request_scheme": true, "request_method": true, "request_length": true, "request_path": true,
	"request_path_original": true, "request_arg": true, "request_uri": true,
}

// accessLogPrefixes are MOSN's variables with a name after them.
var accessLogPrefixes = []string{"request_header_", "response_header_", "cookie_", "request_arg_"}

// httpVariablePrefix is how MOSN registers its HTTP/1 protocol variables
// ("Http1_request_method"); the short names are their protocol-neutral
// aliases. Both are accepted.
const httpVariablePrefix = "Http1_"

// CanonicalAccessLogVariable returns the name a variable is filled under
// (the Http1_ form without its prefix), and whether mosnlite fills it.
func CanonicalAccessLogVariable(name string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, httpVariablePrefix); ok && (strings.HasPrefix(rest, "request_") || strings.HasPrefix(rest, "cookie_")) {
		name = rest
	}
	if accessLogVariables[name] {
		return name, true
	}
	for _, prefix := range accessLogPrefixes {
		if strings.HasPrefix(name, prefix) && len(name) > len(prefix) {
			return name, true
		}
	}
	return name, false
}

// KnownAccessLogVariable reports whether mosnlite fills the variable.
func KnownAccessLogVariable(name string) bool {
	_, ok := CanonicalAccessLogVariable(name)
	return ok
}

// checkAccessLogFormat parses a format and checks that mosnlite fills
// every variable it names (MOSN would print "-" for one it does not know;
// mosnlite says so at load, so that a typo is caught).
func checkAccessLogFormat(format string) error {
	entries, err := ParseAccessLogFormat(format)
	if err != nil {
		return err
	}
	var unknown []string
	for _, e := range entries {
		if e.Var != "" && !KnownAccessLogVariable(e.Var) {
			unknown = append(unknown, "%"+e.Var+"%")
		}
	}
	switch len(unknown) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("access log format: unknown variable %s (see the variables mosnlite fills in the README)", unknown[0])
	}
	return fmt.Errorf("access log format: unknown variables %s (see the variables mosnlite fills in the README)", strings.Join(unknown, ", "))
}
