package config

import (
	"fmt"
	"strings"
)

// What MOSN's names mean, for errors that name the MOSN feature a config
// asks for and mosnlite lacks. Each returns "MOSN's WHAT", or "a MOSN
// extension" for a name MOSN itself does not ship.

func streamFilterFeature(t string) string {
	switch t {
	case "jwt_authn", "jwtauthn":
		return "MOSN's JWT authentication"
	case "ip_access", "ipaccess":
		return "MOSN's IP access control"
	case "fault":
		return "MOSN's fault injection"
	case "payload_limit":
		return "MOSN's request payload limit"
	case "gzip":
		return "MOSN's response compression"
	case "fault_tolerance":
		return "MOSN's fault tolerance"
	case "dsl":
		return "MOSN's DSL scripting"
	case "mirror":
		return "MOSN's request mirroring"
	case "dubbo_stream":
		return "MOSN's Dubbo stream filter"
	case "grpc_metric":
		return "MOSN's gRPC metrics"
	case "healthcheck":
		return "MOSN's RPC health check responder"
	case "flowControlFilter":
		return "MOSN's flow control (Sentinel)"
	case "proxywasm":
		return "MOSN's WebAssembly (proxy-wasm) filter"
	case "transcoder":
		return "MOSN's protocol transcoding"
	case "seata":
		return "MOSN's Seata distributed transactions"
	}
	if strings.HasSuffix(t, "so_plugin") {
		return "MOSN's Go plugin filter"
	}
	return "a MOSN extension"
}

func listenerFilterFeature(t string) string {
	if t == "original_dst" {
		return "MOSN's original destination (transparent proxying)"
	}
	return "a MOSN extension"
}

func networkFilterFeature(t string) string {
	switch t {
	case "udp_proxy":
		return "MOSN's UDP proxy"
	case "fault_inject":
		return "MOSN's network fault injection"
	case "rpc_proxy":
		return "MOSN's RPC proxy"
	case "x_proxy":
		return "MOSN's X protocol proxy"
	case "transcoder":
		return "MOSN's protocol transcoding"
	case "grpc":
		return "MOSN's gRPC server"
	case "tunnel":
		return "MOSN's tunnel"
	}
	return "a MOSN extension"
}

// lbTypeFeature names MOSN's load balancers mosnlite lacks ("" if unknown to MOSN).
func lbTypeFeature(t string) string {
	switch t {
	case "LB_REQUEST_ROUNDROBIN":
		return "MOSN's per-request ordered host failover"
	case "LB_LEAST_CONNECTION":
		return "MOSN's least active connections balancing"
	case "LB_PEAK_EWMA":
		return "MOSN's peak EWMA latency balancing"
	case "LB_MAGLEV":
		return "MOSN's Maglev consistent hashing"
	case "LB_ORIGINAL_DST":
		return "MOSN's original destination balancing"
	}
	return ""
}

// clusterTypeFeature names MOSN's cluster types mosnlite lacks ("" if unknown to MOSN).
func clusterTypeFeature(t string) string {
	switch t {
	case "EDS":
		return "MOSN's hosts from an xDS control plane"
	case "DYNAMIC":
		return "MOSN's hosts added at run time"
	case "ORIGINAL_DST":
		return "MOSN's original destination cluster"
	case "STRICT_DNS":
		return "MOSN's one host per resolved address, re-resolved periodically"
	}
	return ""
}

func protocolFeature(p string) string {
	switch p {
	case "Http2":
		return "MOSN's HTTP/2"
	case "X":
		return "MOSN's X protocol (RPC)"
	case "bolt", "boltv2", "SofaRpc":
		return "MOSN's SOFA RPC"
	case "dubbo", "dubbothrift":
		return "MOSN's Dubbo RPC"
	case "tars":
		return "MOSN's Tars RPC"
	}
	return ""
}

// protocolProblem says why a proxy protocol cannot be served, or "".
// Empty is allowed (it means Http1, or the downstream protocol upstream).
func protocolProblem(p string) string {
	switch p {
	case ProtocolHTTP1, ProtocolHTTP2, ProtocolAuto, "":
		return ""
	}
	if strings.Contains(p, ",") {
		for _, one := range strings.Split(p, ",") {
			if strings.TrimSpace(one) == "" {
				return fmt.Sprintf("%q: empty protocol name in the list", p)
			}
			if msg := protocolProblem(strings.TrimSpace(one)); msg != "" {
				return msg
			}
		}
		return ""
	}
	if f := protocolFeature(p); f != "" {
		return fmt.Sprintf("%q (%s) is not supported by mosnlite (it serves %s, %s and %s)", p, f, ProtocolHTTP1, ProtocolHTTP2, ProtocolAuto)
	}
	if strings.EqualFold(p, ProtocolHTTP1) || strings.EqualFold(p, ProtocolHTTP2) || strings.EqualFold(p, ProtocolAuto) {
		return fmt.Sprintf("%q: MOSN's protocol names are case-sensitive (want %s, %s or %s)", p, ProtocolHTTP1, ProtocolHTTP2, ProtocolAuto)
	}
	return fmt.Sprintf("%q (a MOSN protocol extension) is not supported by mosnlite (it serves %s, %s and %s)", p, ProtocolHTTP1, ProtocolHTTP2, ProtocolAuto)
}
