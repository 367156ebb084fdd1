package main

import (
	"encoding/json"
	"fmt"
)

// listenerName is the name of the i-th bench listener.
func listenerName(i int) string { return fmt.Sprintf("http_%04d", i) }

// respBody is what every bench listener answers.
const respBody = "ok\n"

// handoffConfig is a config with n HTTP listeners on 127.0.0.1:0, each
// answering respBody itself (no backend), plus admin on adminAddr. Logs are
// JSON on stderr at info, where the lines the bench times are.
func handoffConfig(n int, udsDir, adminAddr string) ([]byte, error) {
	listeners := make([]any, n)
	for i := range listeners {
		listeners[i] = map[string]any{
			"name":    listenerName(i),
			"address": "127.0.0.1:0",
			"network": "tcp",
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
				"type":   "proxy",
				"config": map[string]any{"router_config_name": "direct"},
			}}}},
		}
	}
	cfg := map[string]any{
		"uds_dir":         udsDir,
		"handoff_timeout": "20s",
		// The old process would otherwise stay 5 s after the ack watching
		// its successor; the bench measures the drain, not that watch.
		"upgrade_watch_period": "0s",
		"servers": []any{map[string]any{
			"server_name":       "handoff-bench",
			"default_log_path":  "stderr",
			"default_log_level": "info",
			"log_format":        "json",
			"graceful_timeout":  gracefulTimeout.String(),
			"listeners":         listeners,
			"routers": []any{map[string]any{
				"router_config_name": "direct",
				"virtual_hosts": []any{map[string]any{
					"name":    "all",
					"domains": []string{"*"},
					"routers": []any{map[string]any{
						"match":           map[string]any{"prefix": "/"},
						"direct_response": map[string]any{"status": 200, "body": respBody},
					}},
				}},
			}},
		}},
		"admin": map[string]any{"address": adminAddr},
	}
	return json.MarshalIndent(cfg, "", "  ")
}
