package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/server/proxy/http1"
)

// routeAction is a compiled config.RouteAction: where the request goes
// and what changes on the way, read by the exchange.
type routeAction struct {
	cluster string
	// split is a weighted_clusters traffic split, each entry with the
	// cumulative weight up to it; empty: cluster.
	split []splitCluster
	total int
	pick  func(n int) int // [0, n)

	timeout time.Duration // the route's timeout (0: the proxy's upstream timeout)
	retry   *retryPolicy  // nil: connect failures only

	prefixRewrite []byte
	regexRewrite  *regexp.Regexp
	substitution  []byte
	hostRewrite   []byte
	hostHeader    string // auto_host_rewrite_header, lower case

	// reqOps and respOps are the header operations of the route, then its
	// virtual host's, then the route table's, in MOSN's order.
	reqOps, respOps headerOps

	// upgrades: the upgrade protocols (lower case) the route allows (true)
	// or refuses (false); one not listed is allowed (httpupgrade.go).
	upgrades map[string]bool
}

type splitCluster struct {
	name string
	upTo int // cumulative weight, exclusive
}

// retryPolicy is a compiled config.RetryPolicy.
type retryPolicy struct {
	retries int           // at most this many retries
	perTry  time.Duration // retry_timeout: the limit of one try (0: none of its own)
	codes   []int         // status codes retried; nil: every 5xx
}

func compileAction(a *config.RouteAction, vhAndGlobalReq, vhAndGlobalResp [2]headerOps, pick func(n int) int) (*routeAction, error) {
	ra := &routeAction{cluster: a.ClusterName, pick: pick, timeout: a.Timeout.Duration,
		prefixRewrite: []byte(a.PrefixRewrite), hostRewrite: []byte(a.HostRewrite),
		hostHeader: strings.ToLower(a.AutoHostRewriteHeader)}
	for _, u := range a.UpgradeConfigs {
		if ra.upgrades == nil {
			ra.upgrades = map[string]bool{}
		}
		ra.upgrades[strings.ToLower(u.UpgradeType)], _ = a.UpgradeEnabled(u.UpgradeType)
	}
	for _, w := range a.WeightedClusters {
		if w.Cluster.Weight > config.MaxClusterWeight {
			return nil, fmt.Errorf("weighted_clusters: weight %d above %d", w.Cluster.Weight, config.MaxClusterWeight)
		}
		if w.Cluster.Weight <= 0 {
			continue
		}
		ra.total += w.Cluster.Weight
		ra.split = append(ra.split, splitCluster{name: w.Cluster.Name, upTo: ra.total})
	}
	if len(a.WeightedClusters) > 0 && ra.total == 0 {
		return nil, fmt.Errorf("weighted_clusters: the weights add up to 0")
	}
	// As MOSN, a regex_rewrite pattern of one character is ignored.
	if rr := a.RegexRewrite; rr != nil && len(ra.prefixRewrite) == 0 && len(rr.Pattern.Regex) > 1 {
		re, err := regexp.Compile(rr.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		ra.regexRewrite, ra.substitution = re, []byte(rr.Substitution)
	}
	if p := a.RetryPolicy; p != nil && p.RetryOn {
		rp := &retryPolicy{retries: p.NumRetries, perTry: p.RetryTimeout.Duration, codes: p.StatusCodes}
		if rp.retries == 0 {
			rp.retries = defaultRetries
		}
		ra.retry = rp
	}
	ra.reqOps = compileHeaderOps(nil, a.RequestHeadersToAdd, a.RequestHeadersToRemove)
	ra.respOps = compileHeaderOps(nil, a.ResponseHeadersToAdd, a.ResponseHeadersToRemove)
	for _, more := range vhAndGlobalReq {
		ra.reqOps = ra.reqOps.then(more)
	}
	for _, more := range vhAndGlobalResp {
		ra.respOps = ra.respOps.then(more)
	}
	return ra, nil
}

// defaultRetries is MOSN's number of retries when num_retries is 0.
const defaultRetries = 3

// pickCluster is the cluster of one request: the split's draw, or the
// cluster.
func (a *routeAction) pickCluster() string {
	if len(a.split) == 0 {
		return a.cluster
	}
	n := a.pick(a.total)
	for _, s := range a.split {
		if n < s.upTo {
			return s.name
		}
	}
	return a.split[len(a.split)-1].name
}

// clusters lists every cluster the action may send to.
func (a *routeAction) clusters() []string {
	if len(a.split) == 0 {
		return []string{a.cluster}
	}
	out := make([]string, len(a.split))
	for i, s := range a.split {
		out[i] = s.name
	}
	return out
}

// retries reports whether status is one the policy retries.
func (p *retryPolicy) retriesStatus(status int) bool {
	if len(p.codes) == 0 {
		return status >= 500
	}
	for _, c := range p.codes {
		if status == c {
			return true
		}
	}
	return false
}

// rewritePath appends the request's path (without its query) as it goes
// upstream: prefix_rewrite replaces the part the route matched, or else
// regex_rewrite substitutes (Go's $1 syntax, as MOSN); rewritten reports
// whether it changed.
func (a *routeAction) rewritePath(b, path, matched []byte) (out []byte, rewritten bool) {
	switch {
	case len(a.prefixRewrite) > 0:
		if !bytes.HasPrefix(path, matched) {
			return append(b, path...), false
		}
		b = append(b, a.prefixRewrite...)
		return append(b, path[len(matched):]...), true
	case a.regexRewrite != nil:
		out := a.regexRewrite.ReplaceAll(path, a.substitution)
		return append(b, out...), !bytes.Equal(out, path)
	}
	return append(b, path...), false
}

// headerOps are request or response header operations, in order: set,
// append (to a present non-empty value, with ","), remove. Names are lower
// case.
type headerOps struct {
	ops   []headerOp
	names []string // each name the ops touch, once
}

type headerOp struct {
	name     string
	remove   bool
	appendTo bool
	value    []byte
	variable *Variable // a value of one %variable% MOSN knows: filled per request
}

// compileHeaderOps appends, after ops, the additions then the removals of
// one level (MOSN evaluates each level so).
func compileHeaderOps(ops *headerOps, add []config.HeaderValueOption, remove []string) headerOps {
	var out headerOps
	if ops != nil {
		out = *ops
	}
	for _, h := range add {
		if h.Header == nil {
			continue
		}
		op := headerOp{name: strings.ToLower(h.Header.Key), appendTo: h.Append == nil || *h.Append, value: []byte(h.Header.Value)}
		if v := h.Header.Value; len(v) > 2 && v[0] == '%' && v[len(v)-1] == '%' {
			if pv, err := ParseVariable(v[1 : len(v)-1]); err == nil {
				op.variable = &pv
			}
		}
		out.add(op)
	}
	for _, name := range remove {
		out.add(headerOp{name: strings.ToLower(name), remove: true})
	}
	return out
}

func (o *headerOps) add(op headerOp) {
	o.ops = append(o.ops, op)
	for _, n := range o.names {
		if n == op.name {
			return
		}
	}
	o.names = append(o.names, op.name)
}

// then is o followed by more.
func (o headerOps) then(more headerOps) headerOps {
	out := headerOps{ops: append([]headerOp(nil), o.ops...), names: append([]string(nil), o.names...)}
	for _, op := range more.ops {
		out.add(op)
	}
	return out
}

func (o *headerOps) empty() bool { return len(o.ops) == 0 }

// touches reports whether the ops change the field name (any case).
func (o *headerOps) touches(name []byte) bool {
	for _, n := range o.names {
		if http1.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// resolvedField is the final state of a field the ops touch; the value is
// buf[from:to] of the buffer resolve built.
type resolvedField struct {
	name     string
	present  bool
	from, to int
}

// resolve computes the final value of every field the ops touch, starting
// from the fields hs (several of one name read as one, joined with ","),
// building values into buf, which it returns with them.
func (o *headerOps) resolve(hs []http1.Header, info *RequestInfo, buf []byte, out []resolvedField) ([]byte, []resolvedField) {
	for _, name := range o.names {
		if name == "set-cookie" {
			buf, out = o.resolveFields(name, hs, info, buf, out)
			continue
		}
		f := resolvedField{name: name, from: len(buf)}
		for _, h := range hs {
			if !http1.EqualFold(h.Name, name) {
				continue
			}
			if f.present {
				buf = append(buf, ',')
			}
			buf = append(buf, h.Value...)
			f.present = true
		}
		f.to = len(buf)
		for i := range o.ops {
			op := &o.ops[i]
			if op.name != name {
				continue
			}
			switch {
			case op.remove:
				f.present = false
				f.from, f.to = len(buf), len(buf)
			case op.appendTo && f.present && f.to > f.from:
				old := len(buf)
				buf = append(buf, buf[f.from:f.to]...)
				buf = append(buf, ',')
				buf = op.appendValue(buf, info)
				f.from, f.to = old, len(buf)
			default:
				f.from = len(buf)
				buf = op.appendValue(buf, info)
				f.to, f.present = len(buf), true
			}
		}
		out = append(out, f)
	}
	return buf, out
}

// resolveFields is resolve for a field that is never folded (Set-Cookie,
// RFC 9110 5.3): each field stays one, an append adds a field, a set
// replaces them all with one. A field left absent is one not present.
func (o *headerOps) resolveFields(name string, hs []http1.Header, info *RequestInfo, buf []byte, out []resolvedField) ([]byte, []resolvedField) {
	start := len(out)
	for _, h := range hs {
		if http1.EqualFold(h.Name, name) {
			from := len(buf)
			buf = append(buf, h.Value...)
			out = append(out, resolvedField{name: name, present: true, from: from, to: len(buf)})
		}
	}
	for i := range o.ops {
		op := &o.ops[i]
		if op.name != name {
			continue
		}
		if op.remove || !op.appendTo {
			out = out[:start]
		}
		if !op.remove {
			from := len(buf)
			buf = op.appendValue(buf, info)
			out = append(out, resolvedField{name: name, present: true, from: from, to: len(buf)})
		}
	}
	if len(out) == start {
		out = append(out, resolvedField{name: name, from: len(buf), to: len(buf)})
	}
	return buf, out
}

func (op *headerOp) appendValue(b []byte, info *RequestInfo) []byte {
	if op.variable == nil {
		return append(b, op.value...)
	}
	start := len(b)
	b = info.AppendVariable(b, *op.variable)
	if string(b[start:]) == notFound {
		return b[:start] // MOSN writes an empty value for a variable without one
	}
	return b
}

// final is the value of the field name (lower case) after the ops, from
// the fields hs: touched is false if the ops leave it alone.
func (o *headerOps) final(name string, hs []http1.Header) (value []byte, touched, present bool) {
	for _, n := range o.names {
		if n != name {
			continue
		}
		one := headerOps{ops: o.ops, names: []string{name}}
		buf, fs := one.resolve(hs, nil, nil, nil)
		return buf[fs[0].from:fs[0].to], true, fs[0].present
	}
	return nil, false, false
}

// redirectAction is a compiled config.RedirectAction.
type redirectAction struct {
	code               int
	scheme, host, path string
}

func compileRedirect(r *config.RedirectAction) *redirectAction {
	rd := &redirectAction{code: r.ResponseCode, scheme: strings.ToLower(r.SchemeRedirect), host: r.HostRedirect, path: r.PathRedirect}
	if rd.code == 0 {
		rd.code = http.StatusMovedPermanently // MOSN's default
	}
	return rd
}

// appendLocation appends the Location of the redirect of req, as MOSN
// builds it: the redirect's scheme, host and path where set, the request's
// otherwise, and the request's query. A port that is the other scheme's
// default is dropped when the scheme changes.
func (rd *redirectAction) appendLocation(b []byte, req *http1.Request) []byte {
	const current = "http"
	scheme, host := rd.scheme, rd.host
	if scheme == "" {
		scheme = current
	}
	if host == "" {
		host = string(req.Host)
	}
	if scheme != current {
		if h, port, err := net.SplitHostPort(host); err == nil && (scheme == "http" && port == "443" || scheme == "https" && port == "80") {
			host = h
		}
	}
	b = append(b, scheme...)
	b = append(b, "://"...)
	b = append(b, host...)
	if rd.path != "" {
		b = append(b, rd.path...)
	} else {
		p := pathOf(req.Path)
		if len(p) == 0 {
			p = []byte("/")
		}
		b = append(b, p...)
	}
	if q := queryOf(req.Path); len(q) > 0 {
		b = append(b, '?')
		b = append(b, q...)
	}
	return b
}
