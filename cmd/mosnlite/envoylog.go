package main

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Envoy's logging flags on logrus: -l/--log-level, --component-log-level
// and --log-format (spdlog's pattern syntax).

// envoyLogLevel maps Envoy's level names to logrus levels. mosnlite logs
// nothing above error, so "critical" shows errors; "off" shows nothing.
func envoyLogLevel(s string) (logrus.Level, error) {
	switch s {
	case "trace":
		return logrus.TraceLevel, nil
	case "debug":
		return logrus.DebugLevel, nil
	case "info":
		return logrus.InfoLevel, nil
	case "warning", "warn":
		return logrus.WarnLevel, nil
	case "error", "critical":
		return logrus.ErrorLevel, nil
	case "off":
		return logrus.PanicLevel, nil
	}
	return 0, fmt.Errorf("invalid log level %q (want trace, debug, info, warning, error, critical or off)", s)
}

// envoyLevelName is the spdlog name of a level, as %l writes it.
func envoyLevelName(l logrus.Level) string {
	switch l {
	case logrus.TraceLevel:
		return "trace"
	case logrus.DebugLevel:
		return "debug"
	case logrus.InfoLevel:
		return "info"
	case logrus.WarnLevel:
		return "warning"
	case logrus.ErrorLevel:
		return "error"
	default:
		return "critical"
	}
}

// componentsOf maps an Envoy logger id, or a mosnlite component name, to
// the mosnlite components (the "component" log field; "" for the process
// log) it covers. ok is false for a name neither knows; an Envoy id with no
// counterpart in mosnlite covers nothing.
func componentsOf(name string) (comps []string, ok bool) {
	switch name {
	case "server", "reconfig", "listener", "cluster", "http_proxy", "tcp_proxy", "pprof", "metrics", "hotrestart":
		return []string{name}, true
	case "admin":
		return []string{"admin", "pprof", "metrics"}, true
	case "main", "config", "init", "runtime", "misc":
		return []string{"", "server"}, true
	case "upstream", "hc", "health_checker", "pool", "client", "dns":
		return []string{"cluster"}, true
	case "http", "router", "filter":
		return []string{"http_proxy"}, true
	case "connection", "conn_handler", "io":
		return []string{"listener", "http_proxy", "tcp_proxy"}, true
	case "hot_restart":
		return []string{"reconfig", "hot_restart", "hotrestart"}, true
	case "assert", "aws", "backtrace", "dubbo", "envoy_bug", "ext_authz", "ext_proc", "file", "forward_proxy",
		"grpc", "happy_eyeballs", "http2", "http3", "hystrix", "jwt", "kafka", "key_value_store", "lua",
		"matcher", "mongo", "multi_connection", "oauth2", "quic", "quic_stream", "rbac", "rds", "redis",
		"rocketmq", "secret", "stats", "tap", "testing", "thrift", "tracing", "udp", "wasm", "websocket":
		return nil, true
	}
	return nil, false
}

// componentLevels is --component-log-level, resolved to mosnlite components.
type componentLevels map[string]logrus.Level

// parseComponentLogLevels parses "upstream:debug,connection:trace".
func parseComponentLogLevels(s string) (componentLevels, error) {
	out := componentLevels{}
	for _, pair := range strings.Split(s, ",") {
		name, level, ok := strings.Cut(pair, ":")
		if !ok || name == "" || strings.Contains(level, ":") {
			return nil, fmt.Errorf("component log level not correctly specified %q (want component:level)", pair)
		}
		l, err := envoyLogLevel(level)
		if err != nil {
			return nil, err
		}
		comps, known := componentsOf(name)
		if !known {
			return nil, fmt.Errorf("invalid component specified %q", name)
		}
		for _, c := range comps {
			out[c] = l
		}
	}
	return out, nil
}

// levelFilter drops entries above their component's level: the logger's own
// level is the most verbose of them all.
type levelFilter struct {
	next   logrus.Formatter
	base   logrus.Level
	levels componentLevels
}

func (f *levelFilter) Format(e *logrus.Entry) ([]byte, error) {
	lvl := f.base
	c, _ := e.Data["component"].(string)
	if l, ok := f.levels[c]; ok {
		lvl = l
	}
	if e.Level > lvl {
		return nil, nil // logrus writes nothing for an empty line
	}
	return f.next.Format(e)
}

// maxLevel is the most verbose of base and every component's level.
func (c componentLevels) maxLevel(base logrus.Level) logrus.Level {
	m := base
	for _, l := range c {
		m = max(m, l)
	}
	return m
}

// spdlogFormatter lays out a log line with an spdlog pattern, as Envoy's
// --log-format does. The flags are spdlog's and Envoy's (%j, JSON-escaped
// message); a width (%8l, %-8l, %=8l) pads. Source locations (%@ %s %g %#
// %!) are not recorded and print as "-". %v is the message followed by the
// entry's fields as key=value.
type spdlogFormatter struct {
	parts []spdPart
	pid   int
}

type spdPart struct {
	text  string // literal, when flag == 0
	flag  byte
	width int
	align byte // 'r' (pad on the left), 'l' (pad on the right) or 'c'
}

// newSpdlogFormatter compiles pattern; an unknown flag is an error.
func newSpdlogFormatter(pattern string, pid int) (*spdlogFormatter, error) {
	f := &spdlogFormatter{pid: pid}
	var lit strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' {
			lit.WriteByte(pattern[i])
			continue
		}
		i++
		p := spdPart{align: 'r'} // spdlog: %8l pads on the left, %-8l on the right, %=8l both
		if i < len(pattern) && (pattern[i] == '-' || pattern[i] == '=') {
			p.align = 'l'
			if pattern[i] == '=' {
				p.align = 'c'
			}
			i++
		}
		for i < len(pattern) && pattern[i] >= '0' && pattern[i] <= '9' {
			p.width = p.width*10 + int(pattern[i]-'0')
			if p.width > 128 {
				return nil, fmt.Errorf("%q: width above 128", pattern)
			}
			i++
		}
		if i >= len(pattern) {
			return nil, fmt.Errorf("%q: ends inside a %% flag", pattern)
		}
		p.flag = pattern[i]
		if !strings.ContainsRune("vtPnlLaAbBcCYDxmdHIMSefFprRTXzE%@sg#!j", rune(p.flag)) {
			return nil, fmt.Errorf("%q: unsupported flag %%%c", pattern, p.flag)
		}
		if p.flag == '%' {
			lit.WriteByte('%')
			continue
		}
		if lit.Len() > 0 {
			f.parts = append(f.parts, spdPart{text: lit.String()})
			lit.Reset()
		}
		f.parts = append(f.parts, p)
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, spdPart{text: lit.String()})
	}
	return f, nil
}

// Format implements logrus.Formatter.
func (f *spdlogFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	t := e.Time
	for _, p := range f.parts {
		if p.flag == 0 {
			b.WriteString(p.text)
			continue
		}
		v := f.flag(p.flag, e, t)
		if pad := p.width - len(v); pad > 0 {
			switch p.align {
			case 'r':
				v = strings.Repeat(" ", pad) + v
			case 'c':
				v = strings.Repeat(" ", pad/2) + v + strings.Repeat(" ", pad-pad/2)
			default:
				v += strings.Repeat(" ", pad)
			}
		}
		b.WriteString(v)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func (f *spdlogFormatter) flag(c byte, e *logrus.Entry, t time.Time) string {
	switch c {
	case 'v':
		return messageWithFields(e)
	case 'j':
		q := strconv.Quote(messageWithFields(e))
		return q[1 : len(q)-1]
	case 't':
		return strconv.Itoa(syscall.Gettid())
	case 'P':
		return strconv.Itoa(f.pid)
	case 'n':
		if c, ok := e.Data["component"].(string); ok {
			return c
		}
		return "main"
	case 'l':
		return envoyLevelName(e.Level)
	case 'L':
		return strings.ToUpper(envoyLevelName(e.Level)[:1])
	case 'a':
		return t.Format("Mon")
	case 'A':
		return t.Format("Monday")
	case 'b':
		return t.Format("Jan")
	case 'B':
		return t.Format("January")
	case 'c':
		return t.Format("Mon Jan  2 15:04:05 2006")
	case 'C':
		return t.Format("06")
	case 'Y':
		return t.Format("2006")
	case 'D', 'x':
		return t.Format("01/02/06")
	case 'm':
		return t.Format("01")
	case 'd':
		return t.Format("02")
	case 'H':
		return t.Format("15")
	case 'I':
		return t.Format("03")
	case 'M':
		return t.Format("04")
	case 'S':
		return t.Format("05")
	case 'e':
		return fmt.Sprintf("%03d", t.Nanosecond()/1e6)
	case 'f':
		return fmt.Sprintf("%06d", t.Nanosecond()/1e3)
	case 'F':
		return fmt.Sprintf("%09d", t.Nanosecond())
	case 'p':
		return t.Format("PM")
	case 'r':
		return t.Format("03:04:05 PM")
	case 'R':
		return t.Format("15:04")
	case 'T', 'X':
		return t.Format("15:04:05")
	case 'z':
		return t.Format("-07:00")
	case 'E':
		return strconv.FormatInt(t.Unix(), 10)
	default: // source locations: not recorded
		return "-"
	}
}

// messageWithFields is the message and the entry's fields (but its
// component, which %n shows) as sorted key=value pairs.
func messageWithFields(e *logrus.Entry) string {
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		if k != "component" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return e.Message
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, k := range keys {
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		s := fmt.Sprint(v)
		if s == "" || strings.ContainsAny(s, " \t\n\"=") {
			s = strconv.Quote(s)
		}
		b.WriteString(" " + k + "=" + s)
	}
	return b.String()
}
