package proxy

import (
	"testing"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

func testRouter() *config.Router {
	to := func(cluster string) *config.RouteAction { return &config.RouteAction{ClusterName: cluster} }
	return &config.Router{
		RouterConfigName: "r",
		VirtualHosts: []config.VirtualHost{
			{Name: "exact", Domains: []string{"api.example.com"}, Routers: []config.Route{
				{Match: config.RouteMatch{Path: "/exact"}, Route: to("exact-path")},
				{Match: config.RouteMatch{Prefix: "/v1/", Headers: []config.HeaderMatcher{
					{Name: "x-version", Value: "2"}, {Name: "x-canary"}}}, Route: to("canary")},
				{Match: config.RouteMatch{Prefix: "/v1/"}, Route: &config.RouteAction{
					ClusterName: "v1", Timeout: config.Duration{Duration: time.Second}}},
				{Match: config.RouteMatch{Prefix: "/static"}, DirectResponse: &config.DirectResponse{Status: 200, Body: "hi"}},
			}},
			{Name: "wild", Domains: []string{"*.example.com"}, Routers: []config.Route{
				{Match: config.RouteMatch{Prefix: "/"}, Route: to("wild")},
			}},
			{Name: "wilder", Domains: []string{"*.b.example.com"}, Routers: []config.Route{
				{Match: config.RouteMatch{Prefix: "/"}, Route: to("wilder")},
			}},
			{Name: "any", Domains: []string{"*"}, Routers: []config.Route{
				{Match: config.RouteMatch{Prefix: "/only"}, Route: to("any")},
			}},
		},
	}
}

func TestRouteMatch(t *testing.T) {
	rt, err := compileRoutes(testRouter())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, host, path string
		headers          map[string]string
		want             string // cluster; "direct"; "" = no route
	}{
		{"exact path", "api.example.com", "/exact", nil, "exact-path"},
		{"exact path is not a prefix", "api.example.com", "/exact/more", nil, ""},
		{"host case and port", "API.Example.COM:8080", "/exact", nil, "exact-path"},
		{"headers all match", "api.example.com", "/v1/x", map[string]string{"X-Version": "2", "X-Canary": "yes"}, "canary"},
		{"header value differs", "api.example.com", "/v1/x", map[string]string{"X-Version": "3", "X-Canary": "yes"}, "v1"},
		{"header missing", "api.example.com", "/v1/x", map[string]string{"X-Version": "2"}, "v1"},
		{"direct response", "api.example.com", "/static/a.css", nil, "direct"},
		{"exact host has no catch-all route", "api.example.com", "/other", nil, ""},
		{"wildcard", "www.example.com", "/x", nil, "wild"},
		{"longest wildcard wins", "a.b.example.com", "/x", nil, "wilder"},
		{"wildcard needs a label", "example.com", "/only", nil, "any"},
		{"catch-all", "other.org", "/only/x", nil, "any"},
		{"catch-all no route", "other.org", "/nope", nil, ""},
		{"ipv6 host", "[::1]:80", "/only", nil, "any"},
		{"header names ignore case", "api.example.com", "/v1/x", map[string]string{"x-VERSION": "2", "X-Canary": ""}, "canary"},
	}
	for _, tc := range cases {
		var h []http1.Header
		for k, v := range tc.headers {
			h = append(h, http1.Header{Name: []byte(k), Value: []byte(v)})
		}
		res, ok := rt.match([]byte(tc.host), []byte(tc.path), h)
		got := ""
		switch {
		case !ok:
		case res.direct != nil:
			got = "direct"
		default:
			got = res.cluster
		}
		if got != tc.want {
			t.Errorf("%s: %s%s routed to %q, want %q", tc.name, tc.host, tc.path, got, tc.want)
		}
	}
	if res, _ := rt.match([]byte("api.example.com"), []byte("/v1/x"), nil); res.timeout != time.Second {
		t.Errorf("route timeout = %v, want 1s", res.timeout)
	}
}

func TestRouteNoCatchAll(t *testing.T) {
	rt, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{
		{Domains: []string{"a.com"}, Routers: []config.Route{{Route: &config.RouteAction{ClusterName: "a"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.match([]byte("b.com"), []byte("/"), nil); ok {
		t.Fatal("unknown host routed without a * virtual host")
	}
	if res, ok := rt.match([]byte("a.com"), []byte("/anything"), nil); !ok || res.cluster != "a" {
		t.Fatalf("empty match should match every path, got %v %v", res, ok)
	}
	if got := rt.clusters(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("clusters() = %v", got)
	}
}

func TestRouteCompileErrors(t *testing.T) {
	bad := []config.Route{
		{},
		{DirectResponse: &config.DirectResponse{Status: 42}},
	}
	for i, r := range bad {
		_, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{r}}}})
		if err == nil {
			t.Errorf("case %d: bad route accepted", i)
		}
	}
}
