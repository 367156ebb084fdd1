package config

import "strings"

// Router is a named route table referenced by an HTTP proxy filter: MOSN's
// RouterConfiguration.
type Router struct {
	RouterConfigName        string              `json:"router_config_name,omitempty"`
	RequestHeadersToAdd     []HeaderValueOption `json:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `json:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `json:"response_headers_to_remove,omitempty"`
	RouterConfigPath        string              `json:"router_configs,omitempty" refuse:"router_configs (virtual hosts loaded from a directory)"`
	VirtualHosts            []VirtualHost       `json:"virtual_hosts,omitempty"`
}

// VirtualHost matches requests by Host header: exact names, "*suffix"
// wildcards (longest first), then "*".
type VirtualHost struct {
	Name                    string              `json:"name,omitempty"`
	Domains                 []string            `json:"domains,omitempty"`
	Routers                 []Route             `json:"routers,omitempty"`
	RequireTLS              string              `json:"require_tls,omitempty" inert:"unused by MOSN too"`
	RequestHeadersToAdd     []HeaderValueOption `json:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `json:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `json:"response_headers_to_remove,omitempty"`
	PerFilterConfig         Raw                 `json:"per_filter_config,omitzero" inert:"stream filter settings; every stream filter is refused"`
}

// Route is one rule in a virtual host, MOSN's Router: first match wins.
// Exactly one of Route, Redirect and DirectResponse is set.
type Route struct {
	Match                 RouteMatch      `json:"match"`
	Route                 *RouteAction    `json:"route,omitempty"`
	Redirect              *RedirectAction `json:"redirect,omitempty"`
	DirectResponse        *DirectResponse `json:"direct_response,omitempty"`
	Metadata              *Metadata       `json:"metadata,omitempty" inert:"route metadata for MOSN extensions"`
	PerFilterConfig       Raw             `json:"per_filter_config,omitzero" inert:"stream filter settings; every stream filter is refused"`
	RequestMirrorPolicies Raw             `json:"request_mirror_policies,omitzero" refuse:"request_mirror_policies (MOSN's request mirroring)"`
}

// RouteMatch: prefix, else path, else regex (MOSN uses the first one set);
// all Headers must match.
type RouteMatch struct {
	Prefix         string          `json:"prefix,omitempty"`
	Path           string          `json:"path,omitempty"`
	Regex          string          `json:"regex,omitempty"` // RE2, unanchored (as MOSN's regexp.MatchString)
	Headers        []HeaderMatcher `json:"headers,omitempty"`
	Variables      Raw             `json:"variables,omitzero" refuse:"match.variables (MOSN's variable route match)"`
	DslExpressions Raw             `json:"dsl_expressions,omitzero" refuse:"match.dsl_expressions (MOSN's DSL route match)"`
}

// HeaderMatcher matches one request header by exact value (or presence if
// Value is empty), or, when Regex is set, by the regular expression Value
// (RE2, unanchored, as MOSN's regexp.MatchString). The name "method"
// matches the request method, as in MOSN.
type HeaderMatcher struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
	Regex bool   `json:"regex,omitempty"`
}

// RouteAction sends the request to a cluster: MOSN's RouterActionConfig.
type RouteAction struct {
	ClusterName      string            `json:"cluster_name,omitempty"`
	ClusterVariable  string            `json:"cluster_variable,omitempty" refuse:"cluster_variable (a cluster chosen by a MOSN variable)"`
	UpstreamProtocol string            `json:"upstream_protocol,omitempty"`
	ClusterHeader    string            `json:"cluster_header,omitempty" refuse:"cluster_header (a cluster named by a request header)"`
	WeightedClusters []WeightedCluster `json:"weighted_clusters,omitempty"`
	HashPolicy       Raw               `json:"hash_policy,omitzero" inert:"hashing for hash load balancers, which mosnlite refuses"`
	MetadataMatch    *Metadata         `json:"metadata_match,omitempty" refuse:"metadata_match (MOSN's subset load balancing)"`
	Timeout          Duration          `json:"timeout,omitzero"`
	RetryPolicy      *RetryPolicy      `json:"retry_policy,omitempty"`
	PrefixRewrite    string            `json:"prefix_rewrite,omitempty"`
	RegexRewrite     *RegexRewrite     `json:"regex_rewrite,omitempty"`
	HostRewrite      string            `json:"host_rewrite,omitempty"`
	// AutoHostRewrite: MOSN sets the Host to the upstream host's name only
	// for STRICT_DNS clusters, which mosnlite refuses; for the others it
	// does nothing, and neither does mosnlite.
	AutoHostRewrite bool `json:"auto_host_rewrite,omitempty" inert:"MOSN rewrites the Host so only for STRICT_DNS clusters, which mosnlite does not have"`
	// AutoHostRewriteHeader names a header whose value becomes the Host.
	AutoHostRewriteHeader   string              `json:"auto_host_rewrite_header,omitempty"`
	RequestHeadersToAdd     []HeaderValueOption `json:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `json:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `json:"response_headers_to_remove,omitempty"`
	// mosnlite's own field, in the shape of Envoy's RouteAction (MOSN has
	// no route-level upgrade switch): HTTP/1.1 upgrades allowed or refused
	// by protocol. Upgrades not listed are allowed.
	UpgradeConfigs []UpgradeConfig `json:"upgrade_configs,omitempty"`
}

// UpgradeConfig allows or refuses one kind of HTTP/1.1 upgrade (the
// Upgrade header's protocol, e.g. "websocket") on a route: Envoy's
// RouteAction.UpgradeConfig.
type UpgradeConfig struct {
	UpgradeType string `json:"upgrade_type,omitempty"` // case-insensitive
	Enabled     *bool  `json:"enabled,omitempty"`      // default true
}

// UpgradeEnabled reports whether the route lets protocol upgrade, and
// whether the route says anything about it.
func (a *RouteAction) UpgradeEnabled(protocol string) (enabled, listed bool) {
	for _, u := range a.UpgradeConfigs {
		if strings.EqualFold(u.UpgradeType, protocol) {
			return u.Enabled == nil || *u.Enabled, true
		}
	}
	return true, false
}

// WeightedCluster is one cluster of a traffic split.
type WeightedCluster struct {
	Cluster ClusterWeight `json:"cluster"`
}

// MaxClusterWeight is the largest weight of a cluster in a split: MOSN's
// weights are uint32.
const MaxClusterWeight = 1<<32 - 1

// ClusterWeight names a cluster and its share of a split (0 to
// MaxClusterWeight).
type ClusterWeight struct {
	Name          string    `json:"name,omitempty"`
	Weight        int       `json:"weight,omitempty"`
	MetadataMatch *Metadata `json:"metadata_match,omitempty" refuse:"metadata_match (MOSN's subset load balancing)"`
}

// RetryPolicy says when and how often a request is tried again: with
// RetryOn, on a 5xx answer (or one of StatusCodes), a reset before the
// answer and a per-try timeout (RetryTimeout); a connect failure is always
// tried on another host. NumRetries 0 means MOSN's 3.
type RetryPolicy struct {
	RetryOn      bool     `json:"retry_on,omitempty"`
	RetryTimeout Duration `json:"retry_timeout,omitzero"`
	NumRetries   int      `json:"num_retries,omitempty"`
	StatusCodes  []int    `json:"status_codes,omitempty"`
}

func (p *RetryPolicy) active() bool { return p != nil && p.RetryOn }

// RegexRewrite rewrites the path by regular expression.
type RegexRewrite struct {
	Pattern      PatternConfig `json:"pattern"`
	Substitution string        `json:"substitution,omitempty"`
}

// PatternConfig is a regular expression (RE2 syntax).
type PatternConfig struct {
	GoogleRe2 *GoogleRe2 `json:"google_re2,omitempty"`
	Regex     string     `json:"regex,omitempty"`
}

// GoogleRe2 is Envoy's RE2 engine settings; MOSN reads none of them.
type GoogleRe2 struct {
	MaxProgramSize int `json:"max_program_size,omitempty" inert:"unused by MOSN too"`
}

// HeaderValueOption is a header to add, appended or replacing (append
// defaults to true, as in MOSN).
type HeaderValueOption struct {
	Header *HeaderValue `json:"header,omitempty"`
	Append *bool        `json:"append,omitempty"`
}

// HeaderValue is a header name and value.
type HeaderValue struct {
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
}

// RedirectAction answers with a redirect.
type RedirectAction struct {
	ResponseCode   int    `json:"response_code,omitempty"`
	PathRedirect   string `json:"path_redirect,omitempty"`
	HostRedirect   string `json:"host_redirect,omitempty"`
	SchemeRedirect string `json:"scheme_redirect,omitempty"`
}

// DirectResponse answers from the proxy itself.
type DirectResponse struct {
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"`
}

// Metadata is MOSN's metadata: {"filter_metadata": {"mosn.lb": {k: v}}}.
type Metadata struct {
	FilterMetadata *FilterMetadata `json:"filter_metadata,omitempty"`
}

// FilterMetadata holds the metadata MOSN's load balancer reads.
type FilterMetadata struct {
	MosnLB map[string]Raw `json:"mosn.lb,omitempty"`
}
