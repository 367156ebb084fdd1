package proxy

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"

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
	path    []byte         // exact path; nil if unset
	prefix  []byte         // path prefix; empty matches everything
	regex   *regexp.Regexp // path regular expression (unanchored, as MOSN); nil if unset
	headers []headerMatcher
	// matched is what prefix_rewrite replaces: the prefix, the path, or —
	// as MOSN does — a regex route's expression as text.
	matched []byte

	action   *routeAction // to a cluster, or
	redirect *redirectAction
	direct   *config.DirectResponse
}

// headerMatcher is a config.HeaderMatcher with its name lower-cased.
type headerMatcher struct {
	name   string
	value  []byte         // exact (empty: present and empty)
	regex  *regexp.Regexp // instead of value
	method bool           // MOSN's "method": the request method, not a header
}

// routeResult is what a request routes to: a cluster (with the route's
// rewrites, header operations, timeout and retry policy in action), a
// redirect or a direct response.
type routeResult struct {
	cluster  string
	action   *routeAction
	redirect *redirectAction
	direct   *config.DirectResponse
	matched  []byte // the path part the route matched, for prefix_rewrite
}

// compileRoutes compiles r. pick draws a weighted cluster: a number in
// [0, n).
func compileRoutes(r *config.Router, pick func(n int) int) (*routeTable, error) {
	t := &routeTable{exact: map[string]*virtualHost{}}
	if r == nil {
		return t, nil
	}
	global := compileHeaderOps(nil, r.RequestHeadersToAdd, r.RequestHeadersToRemove)
	globalResp := compileHeaderOps(nil, r.ResponseHeadersToAdd, r.ResponseHeadersToRemove)
	for i, vcfg := range r.VirtualHosts {
		vh := &virtualHost{name: vcfg.Name}
		vhReq := compileHeaderOps(nil, vcfg.RequestHeadersToAdd, vcfg.RequestHeadersToRemove)
		vhResp := compileHeaderOps(nil, vcfg.ResponseHeadersToAdd, vcfg.ResponseHeadersToRemove)
		for j, rc := range vcfg.Routers {
			where := fmt.Sprintf("virtual host %d (%s) route %d", i, vcfg.Name, j)
			rt, err := compileRoute(rc, where)
			if err != nil {
				return nil, err
			}
			switch {
			case rc.Route != nil:
				// MOSN applies the route's header operations, then the
				// virtual host's, then the route table's.
				a, err := compileAction(rc.Route, [2]headerOps{vhReq, global}, [2]headerOps{vhResp, globalResp}, pick)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				rt.action = a
			case rc.Redirect != nil:
				rt.redirect = compileRedirect(rc.Redirect)
			case rc.DirectResponse != nil:
				d := *rc.DirectResponse
				if d.Status < 100 || d.Status > 999 {
					return nil, fmt.Errorf("%s: bad direct_response status %d", where, d.Status)
				}
				rt.direct = &d
			default:
				return nil, fmt.Errorf("%s: neither route, redirect nor direct_response", where)
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

// compileRoute compiles a route's match.
func compileRoute(rc config.Route, where string) (route, error) {
	rt := route{prefix: []byte(rc.Match.Prefix)}
	rt.matched = rt.prefix
	switch {
	case rc.Match.Prefix != "":
	case rc.Match.Path != "":
		rt.path = []byte(rc.Match.Path)
		rt.matched = rt.path
	case rc.Match.Regex != "":
		re, err := regexp.Compile(rc.Match.Regex)
		if err != nil {
			return route{}, fmt.Errorf("%s: match.regex: %w", where, err)
		}
		rt.regex, rt.matched = re, []byte(rc.Match.Regex)
	}
	for _, hm := range rc.Match.Headers {
		m := headerMatcher{name: strings.ToLower(hm.Name)}
		switch {
		case hm.Regex:
			re, err := regexp.Compile(hm.Value)
			if err != nil {
				return route{}, fmt.Errorf("%s: header %s: %w", where, hm.Name, err)
			}
			m.regex = re
		default:
			// Exact, as MOSN's StringMatch: an empty value matches a
			// field present and empty.
			m.value = append([]byte{}, hm.Value...)
		}
		m.method = m.name == "method"
		rt.headers = append(rt.headers, m)
	}
	return rt, nil
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
			if r.action == nil {
				continue
			}
			for _, name := range r.action.clusters() {
				if !seen[name] {
					seen[name] = true
					out = append(out, name)
				}
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

// match routes a request by its Host, method, path (without the query) and
// headers. ok is false when no virtual host or no route matches. A
// weighted split picks its cluster here, once per request.
func (t *routeTable) match(host, method, path []byte, h []http1.Header) (routeResult, bool) {
	vh := t.virtualHost(host)
	if vh == nil {
		return routeResult{}, false
	}
	for i := range vh.routes {
		r := &vh.routes[i]
		if !r.matches(method, path, h) {
			continue
		}
		res := routeResult{action: r.action, redirect: r.redirect, direct: r.direct, matched: r.matched}
		if r.action != nil {
			res.cluster = r.action.pickCluster()
		}
		return res, true
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

func (r *route) matches(method, path []byte, h []http1.Header) bool {
	switch {
	case r.path != nil:
		if !bytes.Equal(path, r.path) {
			return false
		}
	case r.regex != nil:
		if !r.regex.Match(path) {
			return false
		}
	case !bytes.HasPrefix(path, r.prefix):
		return false
	}
	for i := range r.headers {
		if !r.headers[i].matches(method, h) {
			return false
		}
	}
	return true
}

// matches: some field of that name has the value (or matches the regular
// expression); "method" is
// matched against the request method.
func (hm *headerMatcher) matches(method []byte, h []http1.Header) bool {
	if hm.method {
		return hm.valueMatches(method)
	}
	for _, f := range h {
		if http1.EqualFold(f.Name, hm.name) && hm.valueMatches(f.Value) {
			return true
		}
	}
	return false
}

func (hm *headerMatcher) valueMatches(v []byte) bool {
	switch {
	case hm.regex != nil:
		return hm.regex.Match(v)
	case hm.value != nil:
		return bytes.Equal(v, hm.value)
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
