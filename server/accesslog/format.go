// Package accesslog writes MOSN's access logs (a listener's access_logs):
// one line per HTTP request or TCP session, in a log_format of MOSN's
// %variable% names, buffered off the data path and reopened on request
// (SIGUSR1), appended to by every generation of an upgrade.
package accesslog

import (
	"fmt"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy"
)

// Format is a compiled log_format: literal text and variables, resolved
// once so that a line is rendered without a lookup by name.
type Format struct {
	parts []part
}

type part struct {
	text  string
	v     proxy.Variable
	isVar bool
}

// Compile compiles a MOSN log_format ("" is MOSN's default format).
func Compile(format string) (*Format, error) {
	entries, err := config.ParseAccessLogFormat(format)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	f := &Format{}
	for _, e := range entries {
		if e.Var == "" {
			f.parts = append(f.parts, part{text: e.Text})
			continue
		}
		v, err := proxy.ParseVariable(e.Var)
		if err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		f.parts = append(f.parts, part{v: v, isVar: true})
	}
	return f, nil
}

// Append appends the line of info (without its newline) to b.
func (f *Format) Append(b []byte, info *proxy.RequestInfo) []byte {
	for i := range f.parts {
		p := &f.parts[i]
		if p.isVar {
			b = info.AppendVariable(b, p.v)
		} else {
			b = append(b, p.text...)
		}
	}
	return b
}
