package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// baseJSON is a small valid config that the bad cases below each break in
// one way.
const baseJSON = `{
  "servers": [{
    "server_name": "s",
    "listeners": [
      {"name": "http", "address": "127.0.0.1:8080",
       "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]},
      {"name": "tcp", "address": "127.0.0.1:9090",
       "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c1"}}]}]}
    ],
    "routers": [{
      "router_config_name": "r",
      "virtual_hosts": [{
        "name": "v", "domains": ["*"],
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c1"}}]
      }]
    }]
  }],
  "cluster_manager": {"clusters": [
    {"name": "c1", "hosts": [{"address": "127.0.0.1:9001"}],
     "health_check": {"interval": "5s", "timeout": "1s"}},
    {"name": "c2", "lb_type": "LB_RANDOM", "hosts": [{"address": "127.0.0.1:9002"}]}
  ]},
  "admin": {"address": "127.0.0.1:34901"}
}`

type obj = map[string]any

// at walks a decoded JSON document: string steps index objects, int steps
// index arrays. It returns the object found there.
func at(t *testing.T, doc any, steps ...any) obj {
	t.Helper()
	cur := doc
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, ok := cur.(obj)
			if !ok {
				t.Fatalf("at %v: not an object", steps)
			}
			cur = m[k]
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at %v: not an array of %d", steps, k+1)
			}
			cur = a[k]
		}
	}
	m, ok := cur.(obj)
	if !ok {
		t.Fatalf("at %v: %T is not an object", steps, cur)
	}
	return m
}

// mutated returns baseJSON changed by fn.
func mutated(t *testing.T, fn func(doc obj)) []byte {
	t.Helper()
	var doc obj
	if err := json.Unmarshal([]byte(baseJSON), &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problemsOf parses data and returns the problems it reports.
func problemsOf(t *testing.T, data []byte) []Problem {
	t.Helper()
	c, err := Parse(data)
	if err == nil {
		t.Fatalf("Parse accepted a bad config")
	}
	if c != nil {
		t.Errorf("Parse returned a config with an error")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is not a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("ValidationError without problems")
	}
	return ve.Problems
}

func TestBaseConfigIsValid(t *testing.T) {
	if _, err := Parse([]byte(baseJSON)); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfigs(t *testing.T) {
	listener := func(t *testing.T, d obj, i int) obj { return at(t, d, "servers", 0, "listeners", i) }
	filter := func(t *testing.T, d obj, i int) obj {
		return at(t, d, "servers", 0, "listeners", i, "filter_chains", 0, "filters", 0)
	}
	vhost := func(t *testing.T, d obj) obj { return at(t, d, "servers", 0, "routers", 0, "virtual_hosts", 0) }
	route := func(t *testing.T, d obj) obj { return at(t, vhost(t, d), "routers", 0) }
	cluster := func(t *testing.T, d obj, i int) obj { return at(t, d, "cluster_manager", "clusters", i) }
	host := func(t *testing.T, d obj) obj { return at(t, cluster(t, d, 0), "hosts", 0) }
	const (
		fpath = "servers[0].listeners[0].filter_chains[0].filters[0]"
		tpath = "servers[0].listeners[1].filter_chains[0].filters[0]"
		vpath = "servers[0].routers[0].virtual_hosts[0]"
		rpath = vpath + ".routers[0]"
		cpath = "cluster_manager.clusters[0]"
	)
	cases := []struct {
		name string
		raw  string                      // used as is when set
		mut  func(t *testing.T, doc obj) // else applied to baseJSON
		path string
		msg  string
	}{
		// Syntax and shape.
		{name: "malformed JSON", raw: "{\n  \"servers\": [\n    }\n}", path: "", msg: "malformed JSON at line 3, column 5"},
		{name: "trailing comma", raw: `{"servers": [],}`, path: "", msg: "malformed JSON at line 1, column 16"},
		{name: "trailing data", raw: `{} {}`, path: "", msg: "unexpected data after the top-level value"},
		{name: "empty input", raw: ``, path: "", msg: "unexpected end of input"},
		{name: "root not an object", raw: `[1]`, path: "", msg: "expected an object, got array"},
		{name: "root null", raw: `null`, path: "", msg: "expected an object, got null"},
		{name: "duplicate key", raw: strings.Replace(baseJSON, `"server_name": "s",`, `"server_name": "s", "server_name": "t",`, 1), path: "servers[0].server_name", msg: "duplicate field"},
		{name: "unknown top-level field", mut: func(t *testing.T, d obj) { d["cluster_manger"] = obj{} }, path: "cluster_manger", msg: "unknown field"},
		{name: "unknown listener field", mut: func(t *testing.T, d obj) { listener(t, d, 0)["adress"] = "x" }, path: "servers[0].listeners[0].adress", msg: "unknown field"},
		{name: "unknown filter config field", mut: func(t *testing.T, d obj) { at(t, filter(t, d, 0), "config")["timeout"] = "1s" }, path: fpath + ".config.timeout", msg: "unknown field"},
		{name: "unknown field in filter", mut: func(t *testing.T, d obj) { filter(t, d, 0)["name"] = "x" }, path: fpath + ".name", msg: "unknown field"},
		{name: "duration as number", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["graceful_timeout"] = 30 }, path: "servers[0].graceful_timeout", msg: `expected a duration string such as "30s", got number`},
		{name: "bad duration", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["graceful_timeout"] = "30x" }, path: "servers[0].graceful_timeout", msg: `"30x": invalid duration`},
		{name: "array expected", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["listeners"] = obj{} }, path: "servers[0].listeners", msg: "expected an array, got object"},
		{name: "string for number", mut: func(t *testing.T, d obj) { host(t, d)["weight"] = "2" }, path: cpath + ".hosts[0].weight", msg: "expected a number, got string"},
		{name: "fraction for integer", mut: func(t *testing.T, d obj) { host(t, d)["weight"] = 1.5 }, path: cpath + ".hosts[0].weight", msg: "1.5: expected an integer"},
		{name: "number for string", mut: func(t *testing.T, d obj) { listener(t, d, 0)["address"] = 8080 }, path: "servers[0].listeners[0].address", msg: "expected a string, got number"},
		{name: "bool expected", mut: func(t *testing.T, d obj) { listener(t, d, 0)["disable_migration"] = "yes" }, path: "servers[0].listeners[0].disable_migration", msg: "expected a boolean, got string"},

		// Top level and servers.
		{name: "no servers", mut: func(t *testing.T, d obj) { d["servers"] = []any{} }, path: "servers", msg: "at least one server is required"},
		{name: "handoff timeout negative", mut: func(t *testing.T, d obj) { d["handoff_timeout"] = "-1s" }, path: "handoff_timeout", msg: "must be positive"},
		{name: "handoff timeout too long", mut: func(t *testing.T, d obj) { d["handoff_timeout"] = "11m" }, path: "handoff_timeout", msg: "must be at most 10m0s"},
		{name: "uds_dir too long", mut: func(t *testing.T, d obj) { d["uds_dir"] = "/" + strings.Repeat("d", 100) }, path: "uds_dir", msg: "too long"},
		{name: "graceful timeout negative", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["graceful_timeout"] = "-1s" }, path: "servers[0].graceful_timeout", msg: "must not be negative"},
		{name: "graceful timeout too long", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["graceful_timeout"] = "2h" }, path: "servers[0].graceful_timeout", msg: "must be at most 1h0m0s"},
		{name: "unknown log level", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["default_log_level"] = "verbose" }, path: "servers[0].default_log_level", msg: `unknown log level "verbose"`},
		{name: "unknown log format", mut: func(t *testing.T, d obj) { at(t, d, "servers", 0)["log_format"] = "xml" }, path: "servers[0].log_format", msg: `unknown log format "xml"`},

		// Listeners.
		{name: "nameless listeners clash by address", mut: func(t *testing.T, d obj) {
			delete(listener(t, d, 0), "name")
			listener(t, d, 1)["name"] = "127.0.0.1:8080"
		}, path: "servers[0].listeners[1].name", msg: `duplicate listener name "127.0.0.1:8080", also used by servers[0].listeners[0]`},
		{name: "duplicate listener name across servers", mut: func(t *testing.T, d obj) {
			d["servers"] = append(d["servers"].([]any), obj{"listeners": []any{obj{
				"name": "tcp", "address": "127.0.0.1:9091",
				"filter_chains": []any{obj{"filters": []any{obj{"type": "tcp_proxy", "config": obj{"cluster": "c2"}}}}},
			}}})
		}, path: "servers[1].listeners[0].name", msg: `duplicate listener name "tcp", also used by servers[0].listeners[1]`},
		{name: "unknown network", mut: func(t *testing.T, d obj) { listener(t, d, 0)["network"] = "sctp" }, path: "servers[0].listeners[0].network", msg: `unknown network "sctp"`},
		{name: "udp listener", mut: func(t *testing.T, d obj) { listener(t, d, 0)["network"] = "UDP" }, path: "servers[0].listeners[0].network", msg: `udp (MOSN's UDP listeners) is not supported by mosnlite`},
		{name: "port out of range", mut: func(t *testing.T, d obj) { listener(t, d, 1)["address"] = "127.0.0.1:99999" }, path: "servers[0].listeners[1].address", msg: `"127.0.0.1:99999": port out of range`},
		{name: "port not a number", mut: func(t *testing.T, d obj) { listener(t, d, 1)["address"] = "127.0.0.1:http" }, path: "servers[0].listeners[1].address", msg: `invalid port "http"`},
		{name: "host not an IP literal", mut: func(t *testing.T, d obj) { listener(t, d, 0)["address"] = "localhost:8080" }, path: "servers[0].listeners[0].address", msg: `host "localhost" is not an IP literal`},
		{name: "address without port", mut: func(t *testing.T, d obj) { listener(t, d, 0)["address"] = "127.0.0.1" }, path: "servers[0].listeners[0].address", msg: "not of the form ip:port"},
		{name: "path on tcp", mut: func(t *testing.T, d obj) { listener(t, d, 0)["address"] = "/tmp/x.sock" }, path: "servers[0].listeners[0].address", msg: `set network to "unix"`},
		{name: "empty address", mut: func(t *testing.T, d obj) { delete(listener(t, d, 0), "address") }, path: "servers[0].listeners[0].address", msg: "required"},
		{name: "empty unix path", mut: func(t *testing.T, d obj) { listener(t, d, 0)["network"] = "unix"; listener(t, d, 0)["address"] = "" }, path: "servers[0].listeners[0].address", msg: "required"},
		{name: "unix path too long", mut: func(t *testing.T, d obj) {
			listener(t, d, 0)["network"] = "unix"
			listener(t, d, 0)["address"] = "/tmp/" + strings.Repeat("s", 103)
		}, path: "servers[0].listeners[0].address", msg: "unix socket path too long (108 bytes, at most 107)"},
		{name: "duplicate address", mut: func(t *testing.T, d obj) { listener(t, d, 1)["address"] = "127.0.0.1:8080" }, path: "servers[0].listeners[1].address", msg: "duplicate address, already used by servers[0].listeners[0]"},
		{name: "duplicate address spelled differently", mut: func(t *testing.T, d obj) { listener(t, d, 1)["address"] = "[::ffff:127.0.0.1]:8080" }, path: "servers[0].listeners[1].address", msg: "duplicate address"},
		{name: "wildcard overlaps", mut: func(t *testing.T, d obj) { listener(t, d, 1)["address"] = "0.0.0.0:8080" }, path: "servers[0].listeners[1].address", msg: `overlaps "127.0.0.1:8080" of servers[0].listeners[0]`},
		{name: "duplicate unix path", mut: func(t *testing.T, d obj) {
			for i, p := range []string{"/tmp/a.sock", "/tmp//a.sock"} {
				listener(t, d, i)["network"] = "unix"
				listener(t, d, i)["address"] = p
			}
		}, path: "servers[0].listeners[1].address", msg: "duplicate address"},
		{name: "admin clashes with listener", mut: func(t *testing.T, d obj) { at(t, d, "admin")["address"] = "127.0.0.1:9090" }, path: "admin.address", msg: "duplicate address, already used by servers[0].listeners[1]"},
		{name: "bad admin address", mut: func(t *testing.T, d obj) { at(t, d, "admin")["address"] = "127.0.0.1" }, path: "admin.address", msg: "not of the form ip:port"},
		{name: "unknown metrics naming", mut: func(t *testing.T, d obj) { d["metrics"] = obj{"address": "127.0.0.1:34903", "naming": "statsd"} }, path: "metrics.naming", msg: `"statsd": want "mosnlite" or "envoy"`},
		{name: "native histograms with envoy naming", mut: func(t *testing.T, d obj) {
			d["metrics"] = obj{"address": "127.0.0.1:34903", "naming": "envoy", "native_histograms": true}
		}, path: "metrics.native_histograms", msg: `not available with naming "envoy"`},
		{name: "naming on admin", mut: func(t *testing.T, d obj) { at(t, d, "admin")["naming"] = "envoy" }, path: "admin.naming", msg: "unknown field"},
		{name: "bad metrics network", mut: func(t *testing.T, d obj) { d["metrics"] = obj{"address": "127.0.0.1:1", "network": "udp"} }, path: "metrics.network", msg: `unknown network "udp"`},
		{name: "two filter chains", mut: func(t *testing.T, d obj) {
			l := listener(t, d, 0)
			l["filter_chains"] = append(l["filter_chains"].([]any), obj{"filters": []any{obj{"type": "proxy", "config": obj{"router_config_name": "r"}}}})
		}, path: "servers[0].listeners[0].filter_chains", msg: "exactly one filter chain is required, got 2"},
		{name: "no filter", mut: func(t *testing.T, d obj) { at(t, listener(t, d, 0), "filter_chains", 0)["filters"] = []any{} }, path: "servers[0].listeners[0].filter_chains[0].filters", msg: "exactly one filter is required, got 0"},
		{name: "unknown filter type", mut: func(t *testing.T, d obj) { filter(t, d, 0)["type"] = "http" }, path: fpath + ".type", msg: `network filter "http" (a MOSN extension) is not supported by mosnlite (want proxy or tcp_proxy)`},
		{name: "missing filter type", mut: func(t *testing.T, d obj) { delete(filter(t, d, 0), "type") }, path: fpath + ".type", msg: "required"},
		{name: "proxy without router", mut: func(t *testing.T, d obj) { delete(filter(t, d, 0), "config") }, path: fpath + ".config.router_config_name", msg: "required"},
		{name: "proxy with unknown router", mut: func(t *testing.T, d obj) { at(t, filter(t, d, 0), "config")["router_config_name"] = "nope" }, path: fpath + ".config.router_config_name", msg: `unknown router "nope" in servers[0].routers`},
		{name: "tcp_proxy without cluster", mut: func(t *testing.T, d obj) { filter(t, d, 1)["config"] = obj{} }, path: tpath + ".config.cluster", msg: "required"},
		{name: "tcp_proxy with unknown cluster", mut: func(t *testing.T, d obj) { at(t, filter(t, d, 1), "config")["cluster"] = "nope" }, path: tpath + ".config.cluster", msg: `unknown cluster "nope"`},
		{name: "negative idle timeout", mut: func(t *testing.T, d obj) { at(t, filter(t, d, 1), "config")["idle_timeout"] = "-5m" }, path: tpath + ".config.idle_timeout", msg: "must be positive"},

		// Routers.
		{name: "duplicate router name", mut: func(t *testing.T, d obj) {
			s := at(t, d, "servers", 0)
			s["routers"] = append(s["routers"].([]any), obj{"router_config_name": "r"})
		}, path: "servers[0].routers[1].router_config_name", msg: `duplicate router name "r"`},
		{name: "virtual host without domains", mut: func(t *testing.T, d obj) { delete(vhost(t, d), "domains") }, path: vpath + ".domains", msg: "at least one domain is required"},
		{name: "duplicate domain", mut: func(t *testing.T, d obj) {
			r := at(t, d, "servers", 0, "routers", 0)
			r["virtual_hosts"] = append(r["virtual_hosts"].([]any), obj{"domains": []any{"a.com", "*"}, "routers": []any{}})
		}, path: "servers[0].routers[0].virtual_hosts[1].domains[1]", msg: `duplicate domain "*", also in ` + vpath},
		{name: "invalid wildcard", mut: func(t *testing.T, d obj) { vhost(t, d)["domains"] = []any{"api.*.com"} }, path: vpath + ".domains[0]", msg: "invalid wildcard domain"},
		{name: "prefix without slash", mut: func(t *testing.T, d obj) { at(t, route(t, d), "match")["prefix"] = "x" }, path: rpath + ".match.prefix", msg: "must start with /"},
		{name: "header matcher without name", mut: func(t *testing.T, d obj) { at(t, route(t, d), "match")["headers"] = []any{obj{"value": "v"}} }, path: rpath + ".match.headers[0].name", msg: "required"},
		{name: "route and direct response", mut: func(t *testing.T, d obj) { route(t, d)["direct_response"] = obj{"status": 200} }, path: rpath, msg: "route, redirect and direct_response are mutually exclusive"},
		{name: "neither route nor direct response", mut: func(t *testing.T, d obj) { delete(route(t, d), "route") }, path: rpath, msg: "one of route, redirect or direct_response is required"},
		{name: "upgrade config without type", mut: func(t *testing.T, d obj) {
			at(t, route(t, d), "route")["upgrade_configs"] = []any{obj{"enabled": false}}
		}, path: rpath + ".route.upgrade_configs[0].upgrade_type", msg: "required"},
		{name: "upgrade type listed twice", mut: func(t *testing.T, d obj) {
			at(t, route(t, d), "route")["upgrade_configs"] = []any{obj{"upgrade_type": "websocket"}, obj{"upgrade_type": "WebSocket", "enabled": false}}
		}, path: rpath + ".route.upgrade_configs[1].upgrade_type", msg: `"WebSocket": listed twice`},
		{name: "upgrade type not a token", mut: func(t *testing.T, d obj) {
			at(t, route(t, d), "route")["upgrade_configs"] = []any{obj{"upgrade_type": "web socket"}}
		}, path: rpath + ".route.upgrade_configs[0].upgrade_type", msg: "not a protocol name"},
		{name: "upgrade enabled not a bool", mut: func(t *testing.T, d obj) {
			at(t, route(t, d), "route")["upgrade_configs"] = []any{obj{"upgrade_type": "websocket", "enabled": "no"}}
		}, path: rpath + ".route.upgrade_configs[0].enabled", msg: "expected a boolean"},
		{name: "Host in a request header operation", mut: func(t *testing.T, d obj) {
			at(t, route(t, d), "route")["request_headers_to_add"] = []any{obj{"header": obj{"key": "host", "value": "internal"}}}
		}, path: rpath + ".route.request_headers_to_add[0].header.key", msg: `"host": the upstream Host is set by the route's host_rewrite`},
		{name: "access log path under a file", mut: func(t *testing.T, d obj) {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			listener(t, d, 0)["access_logs"] = []any{obj{"log_path": filepath.Join(file, "logs", "access.log")}}
		}, path: "servers[0].listeners[0].access_logs[0].log_path", msg: "cannot be opened for appending: "},
		{name: "access log path a directory", mut: func(t *testing.T, d obj) {
			listener(t, d, 0)["access_logs"] = []any{obj{"log_path": t.TempDir()}}
		}, path: "servers[0].listeners[0].access_logs[0].log_path", msg: "cannot be opened for appending: is a directory"},
		{name: "route to unknown cluster", mut: func(t *testing.T, d obj) { at(t, route(t, d), "route")["cluster_name"] = "nope" }, path: rpath + ".route.cluster_name", msg: `unknown cluster "nope"`},
		{name: "direct response status out of range", mut: func(t *testing.T, d obj) {
			delete(route(t, d), "route")
			route(t, d)["direct_response"] = obj{"status": 700}
		}, path: rpath + ".direct_response.status", msg: "700: out of range (100-599)"},

		// Clusters.
		{name: "cluster without name", mut: func(t *testing.T, d obj) { cluster(t, d, 1)["name"] = "" }, path: "cluster_manager.clusters[1].name", msg: "required"},
		{name: "duplicate cluster name", mut: func(t *testing.T, d obj) { cluster(t, d, 1)["name"] = "c1" }, path: "cluster_manager.clusters[1].name", msg: `duplicate cluster name "c1", also used by cluster_manager.clusters[0]`},
		{name: "unknown lb type", mut: func(t *testing.T, d obj) { cluster(t, d, 1)["lb_type"] = "LB_FANCY" }, path: "cluster_manager.clusters[1].lb_type", msg: `unknown lb type "LB_FANCY"`},
		{name: "lb type mosnlite lacks", mut: func(t *testing.T, d obj) { cluster(t, d, 1)["lb_type"] = "LB_MAGLEV" }, path: "cluster_manager.clusters[1].lb_type", msg: `"LB_MAGLEV" (MOSN's Maglev consistent hashing) is not supported by mosnlite`},
		{name: "host port 0", mut: func(t *testing.T, d obj) { host(t, d)["address"] = "127.0.0.1:0" }, path: cpath + ".hosts[0].address", msg: "port 0 cannot be dialled"},
		{name: "host bad name", mut: func(t *testing.T, d obj) { host(t, d)["address"] = "bad host:80" }, path: cpath + ".hosts[0].address", msg: "neither an IP literal nor a valid host name"},
		{name: "host negative weight", mut: func(t *testing.T, d obj) { host(t, d)["weight"] = -1 }, path: cpath + ".hosts[0].weight", msg: "-1: out of range (1-128)"},
		{name: "connect timeout negative", mut: func(t *testing.T, d obj) { cluster(t, d, 0)["connect_timeout"] = "-1s" }, path: cpath + ".connect_timeout", msg: "must be positive"},
		{name: "connect timeout too long", mut: func(t *testing.T, d obj) { cluster(t, d, 0)["connect_timeout"] = "6m" }, path: cpath + ".connect_timeout", msg: "must be at most 5m0s"},
		{name: "health check interval negative", mut: func(t *testing.T, d obj) { at(t, cluster(t, d, 0), "health_check")["interval"] = "-5s" }, path: cpath + ".health_check.interval", msg: "must be positive"},
		{name: "health check timeout above interval", mut: func(t *testing.T, d obj) { at(t, cluster(t, d, 0), "health_check")["timeout"] = "10s" }, path: cpath + ".health_check.timeout", msg: "10s: must not exceed the interval (5s)"},
		{name: "health check timeout above default interval", mut: func(t *testing.T, d obj) {
			hc := at(t, cluster(t, d, 0), "health_check")
			delete(hc, "interval")
			hc["timeout"] = "20s"
		}, path: cpath + ".health_check.timeout", msg: "20s: must not exceed the interval (15s)"},
		{name: "health check threshold too big", mut: func(t *testing.T, d obj) { at(t, cluster(t, d, 0), "health_check")["healthy_threshold"] = 101 }, path: cpath + ".health_check.healthy_threshold", msg: "101: out of range (1-100)"},
		{name: "health check threshold negative", mut: func(t *testing.T, d obj) { at(t, cluster(t, d, 0), "health_check")["unhealthy_threshold"] = -1 }, path: cpath + ".health_check.unhealthy_threshold", msg: "out of range"},
		{name: "max idle conns negative", mut: func(t *testing.T, d obj) { cluster(t, d, 0)["max_idle_conns_per_host"] = -1 }, path: cpath + ".max_idle_conns_per_host", msg: "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.mut != nil {
				data = mutated(t, func(d obj) { tc.mut(t, d) })
			}
			ps := problemsOf(t, data)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %d:\n%s", len(ps), (&ValidationError{Problems: ps}).Error())
			}
			if ps[0].Path != tc.path || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Errorf("got %q\nwant path %q and a message containing %q", ps[0].String(), tc.path, tc.msg)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	data := mutated(t, func(d obj) {
		d["handoff_timeout"] = "soon"
		at(t, d, "servers", 0, "listeners", 0)["adress"] = "127.0.0.1:1"
		at(t, d, "servers", 0, "listeners", 1)["address"] = "127.0.0.1:99999"
		at(t, d, "servers", 0, "routers", 0, "virtual_hosts", 0, "routers", 0, "route")["cluster_name"] = "missing"
		at(t, d, "cluster_manager", "clusters", 1)["lb_type"] = "LB_FANCY"
		d["admin"] = obj{"address": "127.0.0.1:8080"}
	})
	ps := problemsOf(t, data)
	got := (&ValidationError{Problems: ps}).Error()
	want := []string{
		`handoff_timeout: "soon": invalid duration`,
		`servers[0].listeners[0].adress: unknown field`,
		`servers[0].listeners[1].address: "127.0.0.1:99999": port out of range`,
		`servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name: unknown cluster "missing"`,
		`cluster_manager.clusters[1].lb_type: unknown lb type "LB_FANCY"`,
		`admin.address: "127.0.0.1:8080": duplicate address, already used by servers[0].listeners[0]`,
	}
	lines := strings.Split(got, "\n")
	// Decode problems come first in document order; map order in the test's
	// own marshalling decides that order, so compare as sets plus count.
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestProblemsInDocumentOrder(t *testing.T) {
	data := []byte(`{
  "servers": [{"listeners": [{"name": "a", "address": "1.2.3.4", "bogus": 1,
    "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "nope"}}]}]}],
    "graceful_timeout": 5}],
  "extra": true
}`)
	got := (&ValidationError{Problems: problemsOf(t, data)}).Error()
	want := strings.Join([]string{
		`servers[0].listeners[0].bogus: unknown field`,
		`servers[0].graceful_timeout: expected a duration string such as "30s", got number`,
		`extra: unknown field`,
		`servers[0].listeners[0].address: "1.2.3.4": not of the form ip:port or [ipv6]:port`,
		`servers[0].listeners[0].filter_chains[0].filters[0].config.router_config_name: unknown router "nope" in servers[0].routers`,
	}, "\n")
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestDecodeProblemSuppressesItsEcho(t *testing.T) {
	// A listener address of the wrong type is reported once, not also as
	// "required" by Validate.
	ps := problemsOf(t, mutated(t, func(d obj) { at(t, d, "servers", 0, "listeners", 0)["address"] = []any{} }))
	if len(ps) != 1 || ps[0].Path != "servers[0].listeners[0].address" {
		t.Fatalf("got %v", ps)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	missing := dir + "/missing.json"
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: got %v", err)
	}
	bad := dir + "/bad.json"
	writeFile(t, bad, `{"servers": []}`)
	_, err := Load(bad)
	var ve *ValidationError
	if err == nil || !strings.Contains(err.Error(), bad) || !errors.As(err, &ve) {
		t.Fatalf("bad file: got %v", err)
	}
	if len(ve.Problems) != 1 || ve.Problems[0] != (Problem{Path: "servers", Msg: "at least one server is required"}) {
		t.Errorf("problems: %v", ve.Problems)
	}
}

// A log path whose directories do not exist yet but can be made passes, as
// does an existing writable file; the access log makes the directories.
func TestCheckLogPathCreatable(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "a", "b", "access.log"), filepath.Join(dir, "access.log")} {
		if err := checkLogPath(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	existing := filepath.Join(dir, "existing.log")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkLogPath(existing); err != nil {
		t.Errorf("%s: %v", existing, err)
	}
}
