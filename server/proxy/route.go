package proxy

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
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
	path    []byte // exact path; nil if unset
	prefix  []byte // path prefix; empty matches everything
	headers []headerMatcher

	cluster string        // route to this cluster, or
	timeout time.Duration // override of the upstream timeout, 0 = none
	direct  *config.DirectResponse
}

// headerMatcher is a config.HeaderMatcher with its name lower-cased.
type headerMatcher struct {
	name  string
	value []byte // nil: presence is enough
}

// routeResult is what a request routes to: a cluster or a direct response.
// Rewrites and header operations that routes may carry belong here, read
// by the exchange when it composes the upstream request.
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
			rt := route{prefix: []byte(rc.Match.Prefix)}
			if rc.Match.Path != "" {
				rt.path = []byte(rc.Match.Path)
			}
			for _, hm := range rc.Match.Headers {
				m := headerMatcher{name: strings.ToLower(hm.Name)}
				if hm.Value != "" {
					m.value = []byte(hm.Value)
				}
				rt.headers = append(rt.headers, m)
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

// match routes a request by its Host, path (without the query) and
// headers. ok is false when no virtual host or no route matches.
func (t *routeTable) match(host, path []byte, h []http1.Header) (routeResult, bool) {
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

// virtualHost picks by the host without its port, ignoring case.
func (t *routeTable) virtualHost(host []byte) *virtualHost {
	host = stripPort(host)
	var lowered [256]byte
	var name []byte
	if len(host) <= len(lowered) {
		name = lowered[:len(host)]
	} else {
		name = make([]byte, len(host))
	}
	for i, ch := range host {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		name[i] = ch
	}
	if vh, ok := t.exact[string(name)]; ok {
		return vh
	}
	for _, w := range t.wildcard {
		if len(name) > len(w.suffix) && string(name[len(name)-len(w.suffix):]) == w.suffix {
			return w.vh
		}
	}
	return t.any
}

func (r *route) matches(path []byte, h []http1.Header) bool {
	if r.path != nil {
		if !bytes.Equal(path, r.path) {
			return false
		}
	} else if !bytes.HasPrefix(path, r.prefix) {
		return false
	}
	for _, hm := range r.headers {
		found, present := false, false
		for _, f := range h {
			if !http1.EqualFold(f.Name, hm.name) {
				continue
			}
			present = true
			if hm.value == nil || bytes.Equal(f.Value, hm.value) {
				found = true
				break
			}
		}
		if !found || !present {
			return false
		}
	}
	return true
}

// stripPort removes a ":port" from a Host value, and the brackets of an
// IPv6 literal.
func stripPort(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[:i], ':') < 0 {
		return host[:i]
	}
	return host
}
