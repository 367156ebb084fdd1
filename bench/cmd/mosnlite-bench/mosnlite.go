package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// mosnliteConfig is the bench's mosnlite config: an HTTP proxy listener routing
// everything to the backend, the same over TLS (cert), a TCP proxy listener to the sink, and the admin
// port (for readiness), and pprof when pprofAddr is set. Built as JSON because a filter's "config" object is
// decoded by type and has no marshalable field in config.Filter.
func mosnliteConfig(dir, httpAddr, httpsAddr, tcpAddr, adminAddr, pprofAddr, backendHTTP, backendTCP string, cert benchCert, conns int, h2 h2Ports) ([]byte, error) {
	filter := func(typ string, cfg map[string]any) map[string]any {
		return map[string]any{"filter_chains": []any{map[string]any{"filters": []any{
			map[string]any{"type": typ, "config": cfg},
		}}}}
	}
	httpL := filter("proxy", map[string]any{"router_config_name": "bench"})
	httpL["name"], httpL["address"], httpL["network"] = "bench_http", httpAddr, "tcp"
	httpsL := filter("proxy", map[string]any{"router_config_name": "bench"})
	httpsL["name"], httpsL["address"], httpsL["network"] = "bench_https", httpsAddr, "tcp"
	httpsL["filter_chains"].([]any)[0].(map[string]any)["tls_context"] = map[string]any{
		"status": true, "cert_chain": cert.certPath, "private_key": cert.keyPath,
	}
	tcpL := filter("tcp_proxy", map[string]any{"cluster": "sink"})
	tcpL["name"], tcpL["address"], tcpL["network"] = "bench_tcp", tcpAddr, "tcp"
	h2cL := filter("proxy", map[string]any{"router_config_name": "bench", "downstream_protocol": "Http2", "upstream_protocol": "Http1"})
	h2cL["name"], h2cL["address"], h2cL["network"] = "bench_h2c", h2.h2c, "tcp"
	grpcL := filter("proxy", map[string]any{"router_config_name": "grpc", "downstream_protocol": "Http2", "upstream_protocol": "Http2"})
	grpcL["name"], grpcL["address"], grpcL["network"] = "bench_grpc", h2.grpc, "tcp"
	cfg := map[string]any{
		"uds_dir": filepath.Join(dir, "uds"),
		"servers": []any{map[string]any{
			"server_name":       "bench",
			"default_log_path":  "stderr",
			"default_log_level": "warn",
			"graceful_timeout":  "2s",
			"listeners":         []any{httpL, httpsL, tcpL, h2cL, grpcL},
			"routers":           []any{routeAll("bench", "backend"), routeAll("grpc", "grpc")},
		}},
		"cluster_manager": map[string]any{"clusters": []any{
			map[string]any{
				"name": "backend", "lb_type": "LB_ROUNDROBIN",
				"max_idle_conns_per_host": conns,
				"hosts":                   []any{map[string]any{"address": backendHTTP}},
			},
			map[string]any{
				"name": "sink", "lb_type": "LB_ROUNDROBIN",
				"hosts": []any{map[string]any{"address": backendTCP}},
			},
			map[string]any{
				"name": "grpc", "lb_type": "LB_ROUNDROBIN",
				"hosts": []any{map[string]any{"address": h2.grpcBackend}},
			},
		}},
		"admin": map[string]any{"address": adminAddr},
	}
	if pprofAddr != "" {
		cfg["pprof"] = map[string]any{"address": pprofAddr}
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// routeAll is a router sending every request to cluster.
func routeAll(name, cluster string) map[string]any {
	return map[string]any{
		"router_config_name": name,
		"virtual_hosts": []any{map[string]any{
			"name":    "all",
			"domains": []string{"*"},
			"routers": []any{map[string]any{
				"match": map[string]any{"prefix": "/"},
				"route": map[string]any{"cluster_name": cluster},
			}},
		}},
	}
}

// startMosnlite writes the config, validates it and runs `mosnlite start`,
// ready once the admin port answers /ready with 200.
func startMosnlite(ctx context.Context, bin, dir, httpAddr, httpsAddr, tcpAddr, pprofAddr string, b *backend, cert benchCert, conns int, h2 h2Ports) (*proc, error) {
	adminAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := mosnliteConfig(dir, httpAddr, httpsAddr, tcpAddr, adminAddr, pprofAddr, b.httpAddr(), b.sinkAddr(), cert, conns, h2)
	if err != nil {
		return nil, fmt.Errorf("mosnlite: render config: %w", err)
	}
	path := filepath.Join(dir, "mosnlite.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return nil, fmt.Errorf("mosnlite: write config: %w", err)
	}
	if out, err := exec.Command(bin, "validate", "-c", path).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mosnlite: config rejected: %v\n%s", err, out)
	}
	p, err := startProc("mosnlite", filepath.Join(dir, "mosnlite.log"), bin, "start", "-c", path)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	err = p.waitReady(ctx, 15*time.Second, func() error {
		res, err := client.Get("http://" + adminAddr + "/ready")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %s", res.Status)
		}
		return dialable(tcpAddr)
	})
	if err != nil {
		p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, fmt.Errorf("mosnlite: %w", err)
	}
	return p, nil
}

// mosnliteVersion is the first line of `mosnlite version`.
func mosnliteVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
