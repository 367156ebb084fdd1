package proxy

import (
	"fmt"
	"net"
	"strings"
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
	rt, err := compileRoutes(testRouter(), nil)
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
		{"headers all match", "api.example.com", "/v1/x", map[string]string{"X-Version": "2", "X-Canary": ""}, "canary"},
		{"header value differs", "api.example.com", "/v1/x", map[string]string{"X-Version": "3", "X-Canary": ""}, "v1"},
		{"empty value: present and empty, as MOSN", "api.example.com", "/v1/x", map[string]string{"X-Version": "2", "X-Canary": "yes"}, "v1"},
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
		res, ok := rt.match([]byte(tc.host), []byte("GET"), []byte(tc.path), h)
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
	if res, _ := rt.match([]byte("api.example.com"), []byte("GET"), []byte("/v1/x"), nil); res.action.timeout != time.Second {
		t.Errorf("route timeout = %v, want 1s", res.action.timeout)
	}
}

func TestRouteNoCatchAll(t *testing.T) {
	rt, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{
		{Domains: []string{"a.com"}, Routers: []config.Route{{Route: &config.RouteAction{ClusterName: "a"}}}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.match([]byte("b.com"), []byte("GET"), []byte("/"), nil); ok {
		t.Fatal("unknown host routed without a * virtual host")
	}
	if res, ok := rt.match([]byte("a.com"), []byte("GET"), []byte("/anything"), nil); !ok || res.cluster != "a" {
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
		{Match: config.RouteMatch{Regex: "("}, Route: &config.RouteAction{ClusterName: "a"}},
		{Route: &config.RouteAction{WeightedClusters: []config.WeightedCluster{{Cluster: config.ClusterWeight{Name: "a"}}}}},
	}
	for i, r := range bad {
		_, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{r}}}}, nil)
		if err == nil {
			t.Errorf("case %d: bad route accepted", i)
		}
	}
}

func hdrs(kv ...string) []http1.Header {
	var h []http1.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, http1.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

// MOSN's regular-expression matches are unanchored (regexp.MatchString),
// and a header named "method" matches the request method.
func TestRouteRegexAndMethod(t *testing.T) {
	rt, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Match: config.RouteMatch{Regex: "/v[0-9]+/", Headers: []config.HeaderMatcher{{Name: "User-Agent", Value: "^curl/", Regex: true}}},
			Route: &config.RouteAction{ClusterName: "curl-api"}},
		{Match: config.RouteMatch{Regex: "^/api/v[0-9]+/"}, Route: &config.RouteAction{ClusterName: "api"}},
		{Match: config.RouteMatch{Prefix: "/", Headers: []config.HeaderMatcher{{Name: "method", Value: "POST"}}}, Route: &config.RouteAction{ClusterName: "writes"}},
		{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{ClusterName: "rest"}},
	}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		h            []http1.Header
		want         string
	}{
		{"GET", "/api/v2/x", hdrs("User-Agent", "curl/8.0"), "curl-api"},
		{"GET", "/x/v2/y", hdrs("user-agent", "curl/8.0"), "curl-api"}, // unanchored
		{"GET", "/api/v2/x", hdrs("User-Agent", "Mozilla curl/8.0"), "api"},
		{"GET", "/x/api/v2/", nil, "rest"},
		{"POST", "/anything", nil, "writes"},
		{"GET", "/api/vx/", nil, "rest"},
	} {
		res, ok := rt.match([]byte("h"), []byte(tc.method), []byte(tc.path), tc.h)
		if !ok || res.cluster != tc.want {
			t.Errorf("%s %s %v: routed to %q (%v), want %q", tc.method, tc.path, tc.h, res.cluster, ok, tc.want)
		}
	}
}

// A weighted split draws once per request, in proportion to the weights:
// with the draw given, each number goes to the cluster whose share holds it.
func TestWeightedClusterDraws(t *testing.T) {
	draws := []int{0, 59, 60, 89, 90, 99}
	i := 0
	pick := func(n int) int {
		if n != 100 {
			t.Fatalf("drawn from [0, %d), want [0, 100)", n)
		}
		d := draws[i%len(draws)]
		i++
		return d
	}
	rt, err := compileRoutes(&config.Router{VirtualHosts: []config.VirtualHost{{Domains: []string{"*"}, Routers: []config.Route{
		{Route: &config.RouteAction{WeightedClusters: []config.WeightedCluster{
			{Cluster: config.ClusterWeight{Name: "a", Weight: 60}},
			{Cluster: config.ClusterWeight{Name: "zero", Weight: 0}},
			{Cluster: config.ClusterWeight{Name: "b", Weight: 30}},
			{Cluster: config.ClusterWeight{Name: "c", Weight: 10}},
		}}},
	}}}}, pick)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range draws {
		res, _ := rt.match([]byte("h"), []byte("GET"), []byte("/"), nil)
		got = append(got, res.cluster)
	}
	if want := "a a b b c c"; strings.Join(got, " ") != want {
		t.Fatalf("draws %v went to %v, want %s", draws, got, want)
	}
	if cl := rt.clusters(); strings.Join(cl, ",") != "a,b,c" {
		t.Fatalf("clusters() = %v, want the split's (weight 0 never chosen)", cl)
	}
}

// Weights up to MOSN's uint32 each add up without overflow and draw over
// their whole sum; one above is refused before any request could panic.
func TestWeightedClusterLargeWeights(t *testing.T) {
	const max = config.MaxClusterWeight
	var drawnFrom int
	pick := func(n int) int { drawnFrom = n; return n - 1 }
	split := []config.WeightedCluster{
		{Cluster: config.ClusterWeight{Name: "a", Weight: max}}, {Cluster: config.ClusterWeight{Name: "b", Weight: max}}}
	ra, err := compileAction(&config.RouteAction{WeightedClusters: split}, [2]headerOps{}, [2]headerOps{}, pick)
	if err != nil {
		t.Fatal(err)
	}
	if got := ra.pickCluster(); got != "b" || drawnFrom != 2*max {
		t.Fatalf("the last draw went to %q, drawn from [0, %d), want b from [0, %d)", got, drawnFrom, 2*max)
	}
	split[1].Cluster.Weight = 1 << 62
	if _, err := compileAction(&config.RouteAction{WeightedClusters: split}, [2]headerOps{}, [2]headerOps{}, pick); err == nil ||
		!strings.Contains(err.Error(), "above 4294967295") {
		t.Fatalf("weight 1<<62: %v, want refused", err)
	}
}

func TestPathRewrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a       config.RouteAction
		matched string
		path    string
		want    string
		changed bool
	}{
		{"prefix", config.RouteAction{PrefixRewrite: "/v2/"}, "/api/", "/api/users", "/v2/users", true},
		{"prefix to root", config.RouteAction{PrefixRewrite: "/"}, "/api", "/api", "/", true},
		{"path route", config.RouteAction{PrefixRewrite: "/new"}, "/old", "/old", "/new", true},
		{"regex", config.RouteAction{RegexRewrite: &config.RegexRewrite{Pattern: config.PatternConfig{Regex: "^/users/([0-9]+)$"}, Substitution: "/u?id=$1"}}, "/", "/users/42", "/u?id=42", true},
		{"regex no match", config.RouteAction{RegexRewrite: &config.RegexRewrite{Pattern: config.PatternConfig{Regex: "^/x"}, Substitution: "/y"}}, "/", "/z", "/z", false},
		{"one-character regex ignored, as MOSN", config.RouteAction{RegexRewrite: &config.RegexRewrite{Pattern: config.PatternConfig{Regex: "a"}, Substitution: "b"}}, "/", "/a", "/a", false},
		{"two-character regex", config.RouteAction{RegexRewrite: &config.RegexRewrite{Pattern: config.PatternConfig{Regex: "/a"}, Substitution: "/b"}}, "/", "/a", "/b", true},
		{"prefix wins over regex", config.RouteAction{PrefixRewrite: "/p/", RegexRewrite: &config.RegexRewrite{Pattern: config.PatternConfig{Regex: ".*"}, Substitution: "/r"}}, "/a/", "/a/b", "/p/b", true},
	} {
		a, err := compileAction(&tc.a, [2]headerOps{}, [2]headerOps{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, changed := a.rewritePath([]byte("GET "), []byte(tc.path), []byte(tc.matched))
		if string(got) != "GET "+tc.want || changed != tc.changed {
			t.Errorf("%s: %q → %q (changed %v), want %q (%v)", tc.name, tc.path, got, changed, tc.want, tc.changed)
		}
	}
}

// Header operations in MOSN's order and semantics: the route's, the
// virtual host's, the table's; append joins a present value with ",",
// append false replaces it, removal deletes every field of the name.
func TestHeaderOpsResolve(t *testing.T) {
	f := false
	add := func(k, v string, appendTo *bool) config.HeaderValueOption {
		return config.HeaderValueOption{Header: &config.HeaderValue{Key: k, Value: v}, Append: appendTo}
	}
	route := compileHeaderOps(nil, []config.HeaderValueOption{add("X-Tag", "route", nil), add("X-Env", "prod", &f), add("X-Empty", "e", nil)}, []string{"X-Secret"})
	vh := compileHeaderOps(nil, []config.HeaderValueOption{add("x-tag", "vhost", nil)}, []string{"X-Drop"})
	table := compileHeaderOps(nil, []config.HeaderValueOption{add("X-Env", "table", &f), add("X-Client", "%downstream_remote_address%", nil)}, nil)
	ops := route.then(vh).then(table)
	in := hdrs("X-Tag", "client", "X-Env", "dev", "x-secret", "s1", "X-Secret", "s2", "X-Keep", "k", "X-Drop", "d", "X-Empty", "")
	info := &RequestInfo{Remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5555}}
	buf, fs := ops.resolve(in, info, nil, nil)
	got := map[string]string{}
	for _, f := range fs {
		if f.present {
			got[f.name] = string(buf[f.from:f.to])
		} else {
			got[f.name] = "<removed>"
		}
	}
	want := map[string]string{"x-tag": "client,route,vhost", "x-env": "table", "x-secret": "<removed>", "x-drop": "<removed>",
		"x-empty": "e", "x-client": "10.0.0.9:5555"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resolved %v\nwant     %v", got, want)
	}
	if ops.touches([]byte("X-Keep")) || !ops.touches([]byte("X-SECRET")) {
		t.Fatal("touches: wrong names")
	}
	if v, touched, present := ops.final("x-tag", in); !touched || !present || string(v) != "client,route,vhost" {
		t.Fatalf("final(x-tag) = %q %v %v", v, touched, present)
	}
}

func TestRedirectLocation(t *testing.T) {
	req := func(host, target string) *http1.Request {
		r := &http1.Request{Host: []byte(host), Path: []byte(target)}
		return r
	}
	for _, tc := range []struct {
		rd   config.RedirectAction
		req  *http1.Request
		want string
		code int
	}{
		{config.RedirectAction{SchemeRedirect: "https"}, req("a.com:80", "/x?q=1"), "https://a.com/x?q=1", 301},
		{config.RedirectAction{SchemeRedirect: "https"}, req("a.com:8080", "/x"), "https://a.com:8080/x", 301},
		{config.RedirectAction{ResponseCode: 307, HostRedirect: "b.com", PathRedirect: "/new"}, req("a.com", "/old?k=v"), "http://b.com/new?k=v", 307},
		{config.RedirectAction{ResponseCode: 302}, req("a.com", "?q"), "http://a.com/?q", 302},
	} {
		rd := compileRedirect(&tc.rd)
		if got := string(rd.appendLocation(nil, tc.req)); got != tc.want || rd.code != tc.code {
			t.Errorf("%+v on %s%s: %d %s, want %d %s", tc.rd, tc.req.Host, tc.req.Path, rd.code, got, tc.code, tc.want)
		}
	}
}
