package systemd

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseListenFDs(t *testing.T) {
	const pid = 321
	for _, c := range []struct {
		name    string
		env     env
		want    []ListenFD
		ignored string
	}{
		{"no activation", env{}, nil, ""},
		{"named", env{"LISTEN_PID": "321", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:admin"},
			[]ListenFD{{3, "web"}, {4, "admin"}}, ""},
		{"unnamed", env{"LISTEN_PID": "321", "LISTEN_FDS": "2"},
			[]ListenFD{{3, "unknown"}, {4, "unknown"}}, ""},
		// systemd names every socket of a unit after the unit by default.
		{"default names repeat", env{"LISTEN_PID": "321", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "mosnlite.socket:mosnlite.socket"},
			[]ListenFD{{3, "mosnlite.socket"}, {4, "mosnlite.socket"}}, ""},
		{"an empty name", env{"LISTEN_PID": "321", "LISTEN_FDS": "2", "LISTEN_FDNAMES": ":admin"},
			[]ListenFD{{3, ""}, {4, "admin"}}, ""},
		{"zero", env{"LISTEN_PID": "321", "LISTEN_FDS": "0"}, []ListenFD{}, ""},
		{"for another process", env{"LISTEN_PID": "7", "LISTEN_FDS": "1"}, nil, "LISTEN_PID=7"},
	} {
		a, err := ParseListenFDs(c.env.get, pid)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(a.FDs, c.want) {
			t.Errorf("%s: fds %v, want %v", c.name, a.FDs, c.want)
		}
		if (c.ignored == "") != (a.Ignored == "") || !strings.Contains(a.Ignored, c.ignored) {
			t.Errorf("%s: ignored %q, want one naming %q", c.name, a.Ignored, c.ignored)
		}
	}
}

func TestParseListenFDsErrorsNameWhatIsWrong(t *testing.T) {
	const pid = 321
	for _, c := range []struct {
		env  env
		want []string // each must appear in the error
	}{
		{env{"LISTEN_FDS": "2"}, []string{"LISTEN_FDS=\"2\"", "LISTEN_PID is not"}},
		{env{"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, []string{"LISTEN_PID=\"abc\"", "not a process id"}},
		{env{"LISTEN_PID": "-3", "LISTEN_FDS": "1"}, []string{"LISTEN_PID"}},
		{env{"LISTEN_PID": "321"}, []string{"LISTEN_FDS is not set"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "two"}, []string{"LISTEN_FDS=\"two\"", "not a number"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "-1"}, []string{"LISTEN_FDS=-1", "out of range"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "1000000"}, []string{"LISTEN_FDS=1000000", "out of range"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"}, []string{"LISTEN_FDNAMES=\"web\"", "1 names", "LISTEN_FDS=2"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b:c"}, []string{"3 names", "LISTEN_FDS=1"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:bad\x01name"}, []string{"name 2 (fd 4)", "not printable"}},
		{env{"LISTEN_PID": "321", "LISTEN_FDS": "1", "LISTEN_FDNAMES": strings.Repeat("n", 256)}, []string{"name 1 (fd 3)", "longer than 255"}},
	} {
		a, err := ParseListenFDs(c.env.get, pid)
		if err == nil {
			t.Errorf("%v: %v, want an error", c.env, a)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", c.env, err, w)
			}
		}
	}
}
