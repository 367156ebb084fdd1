package server

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service/stats"
)

// Building the plane registers, at zero, every series of its listeners and
// clusters that a dashboard reads — request counters by cluster and status
// class, the clusters' upstream series and per-host histograms, the TCP
// session histogram, the migration counters of the listeners that migrate
// — and a second build (a revert) finds the same series.
func TestBuildRegistersTheDataPlaneSeries(t *testing.T) {
	dir := t.TempDir()
	js := fmt.Sprintf(`{"uds_dir": %q, "servers": [{"server_name": "main", "listeners": [
	    {"name": "web", "address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]},
	    {"name": "db", "address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "pg"}}]}]},
	    {"name": "pinned", "address": "127.0.0.1:0", "disable_migration": true, "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "pg"}}]}]}],
	  "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
	    {"match": {"prefix": "/teapot"}, "direct_response": {"status": 418}},
	    {"match": {"prefix": "/"}, "route": {"cluster_name": "app"}}]}]}]}],
	  "cluster_manager": {"clusters": [
	    {"name": "app", "hosts": [{"address": "10.0.0.1:80"}, {"address": "10.0.0.2:80"}]},
	    {"name": "pg", "hosts": [{"address": "10.0.0.9:5432"}]}]}}`, dir+"/uds")
	cfg, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	s, err := New(Options{Config: cfg, Log: logrus.NewEntry(l), PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	series := func() []string {
		var out []string
		for _, x := range s.reg.Snapshot() {
			if x.Kind == stats.KindCounter || strings.HasPrefix(x.Name, "cluster.") || strings.HasSuffix(x.Name, "_active") {
				out = append(out, x.Key())
			}
		}
		for _, h := range s.reg.Histograms() {
			if h.Count != 0 {
				t.Errorf("%s observed %d times at build", h.ID(), h.Count)
			}
			out = append(out, h.ID())
		}
		sort.Strings(out)
		return out
	}
	got := series()
	have := map[string]bool{}
	for _, k := range got {
		have[k] = true
	}
	key := func(name string, labels ...string) string { return stats.Sample{Name: name, Labels: labels}.Key() }
	hist := func(name string, labels ...string) string {
		return s.reg.Histogram(name, "", nil, labels...).Snapshot().ID()
	}
	var want []string
	for _, c := range []string{"app", stats.NoCluster} {
		for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
			want = append(want, key(stats.HTTPRequests, "listener", "web", "cluster", c, "status_class", class))
		}
	}
	for _, c := range []string{"app", "pg"} {
		for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
			want = append(want, key(stats.ClusterRequests, "cluster", c, "status_class", class))
		}
		for _, n := range []string{stats.ClusterCxActive, stats.ClusterRequestsActive, stats.ClusterHosts, stats.ClusterHealthyHosts} {
			want = append(want, key(n, "cluster", c))
		}
		want = append(want, key(stats.ClusterRequestTimeouts, "cluster", c))
	}
	for _, h := range [][2]string{{"app", "10.0.0.1:80"}, {"app", "10.0.0.2:80"}, {"pg", "10.0.0.9:5432"}} {
		want = append(want,
			hist(stats.ClusterConnectDuration, "cluster", h[0], "host", h[1]),
			hist(stats.ClusterResponseDuration, "cluster", h[0], "host", h[1]))
	}
	for _, l := range []string{"db", "pinned"} {
		want = append(want, hist(stats.TCPSessionDuration, "listener", l, "cluster", "pg"), key(stats.TCPSessions, "listener", l, "cluster", "pg"))
	}
	want = append(want, key(stats.HTTPRequestsActive, "listener", "web"),
		key(stats.ConnectionsMoved, "listener", "web", "kind", "http"), key(stats.ConnectionsNotMoved, "listener", "web", "kind", "http"),
		key(stats.ConnectionsMoved, "listener", "db", "kind", "tcp"), key(stats.ConnectionsNotMoved, "listener", "db", "kind", "tcp"))
	for _, k := range want {
		if !have[k] {
			t.Errorf("not registered at build: %s", k)
		}
	}
	for _, k := range got {
		if strings.Contains(k, "pinned") && strings.Contains(k, "migrat") {
			t.Errorf("a listener with disable_migration has a migration counter: %s", k)
		}
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if again := series(); strings.Join(again, "\n") != strings.Join(got, "\n") {
		t.Errorf("a second build changed the series:\n%s\nthen\n%s", strings.Join(got, "\n"), strings.Join(again, "\n"))
	}
}
