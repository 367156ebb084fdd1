package proxy

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mosnlite/mosnlite/config"
)

// routeTable is a compiled config.Router: virtual hosts by exact domain, by
// "*suffix" wildcard (longest suffix first), then the "*" catch-all.
type routeTable struct {
	exact    map[string]*virtualHost
	wildcard []wildcardHost
	any      *virtualHost
}

type wildcardHost struct {
	suffix string // "*.example.com" → ".example.com"
	vh     *virtualHost
}

type virtualHost struct {
	name   string
	routes []route
}

type route struct {
	path    string // exact path; "" if unset
	prefix  string // path prefix; "" matches everything
	headers []config.HeaderMatcher

	cluster string        // route to this cluster, or
	timeout time.Duration // override of the upstream timeout, 0 = none
	direct  *config.DirectResponse
}

// routeResult is what a request routes to: a cluster or a direct response.
type routeResult struct {
	cluster string
	timeout time.Duration
	direct  *config.DirectResponse
}

func compileRoutes(r *config.Router) (*routeTable, error) {
	t := &routeTable{exact: map[string]*virtualHost{}}
	if r == nil {
		return t, nil
	}
	for i, vcfg := range r.VirtualHosts {
		vh := &virtualHost{name: vcfg.Name}
		for j, rc := range vcfg.Routers {
			rt := route{path: rc.Match.Path, prefix: rc.Match.Prefix,
				headers: append([]config.HeaderMatcher(nil), rc.Match.Headers...)}
			for k := range rt.headers {
				rt.headers[k].Name = http.CanonicalHeaderKey(rt.headers[k].Name)
			}
			switch {
			case rc.Route != nil:
				rt.cluster = rc.Route.ClusterName
				rt.timeout = rc.Route.Timeout.Duration
			case rc.DirectResponse != nil:
				d := *rc.DirectResponse
				if d.Status < 100 || d.Status > 999 {
					return nil, fmt.Errorf("virtual host %d (%s) route %d: bad direct_response status %d", i, vcfg.Name, j, d.Status)
				}
				rt.direct = &d
			default:
				return nil, fmt.Errorf("virtual host %d (%s) route %d: neither route nor direct_response", i, vcfg.Name, j)
			}
			vh.routes = append(vh.routes, rt)
		}
		for _, d := range vcfg.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if t.any == nil {
					t.any = vh
				}
			case strings.HasPrefix(d, "*"):
				t.wildcard = append(t.wildcard, wildcardHost{suffix: d[1:], vh: vh})
			default:
				if _, dup := t.exact[d]; !dup {
					t.exact[d] = vh
				}
			}
		}
	}
	// Longest suffix first; stable keeps config order among equals.
	sort.SliceStable(t.wildcard, func(a, b int) bool {
		return len(t.wildcard[a].suffix) > len(t.wildcard[b].suffix)
	})
	return t, nil
}

// clusters returns every cluster name the table routes to.
func (t *routeTable) clusters() []string {
	seen := map[string]bool{}
	var out []string
	add := func(vh *virtualHost) {
		if vh == nil {
			return
		}
		for _, r := range vh.routes {
			if r.direct == nil && !seen[r.cluster] {
				seen[r.cluster] = true
				out = append(out, r.cluster)
			}
		}
	}
	for _, vh := range t.exact {
		add(vh)
	}
	for _, w := range t.wildcard {
		add(w.vh)
	}
	add(t.any)
	sort.Strings(out)
	return out
}

// match routes a request by its Host, path and headers. ok is false when no
// virtual host or no route matches.
func (t *routeTable) match(host, path string, h http.Header) (routeResult, bool) {
	vh := t.virtualHost(host)
	if vh == nil {
		return routeResult{}, false
	}
	for i := range vh.routes {
		r := &vh.routes[i]
		if r.matches(path, h) {
			return routeResult{cluster: r.cluster, timeout: r.timeout, direct: r.direct}, true
		}
	}
	return routeResult{}, false
}

func (t *routeTable) virtualHost(host string) *virtualHost {
	host = strings.ToLower(stripPort(host))
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.wildcard {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return w.vh
		}
	}
	return t.any
}

func (r *route) matches(path string, h http.Header) bool {
	if r.path != "" {
		if path != r.path {
			return false
		}
	} else if !strings.HasPrefix(path, r.prefix) {
		return false
	}
	for _, hm := range r.headers {
		vals, ok := h[hm.Name]
		if !ok {
			return false
		}
		if hm.Value == "" {
			continue
		}
		found := false
		for _, v := range vals {
			if v == hm.Value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// stripPort removes a ":port" from a Host header value, and the brackets of
// an IPv6 literal.
func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}
