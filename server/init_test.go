package server

import (
	"net"
	"strings"
	"testing"

	"github.com/mosnlite/mosnlite/config"
)

func TestInitBuildsWithoutBinding(t *testing.T) {
	// The listener's port is taken: Init succeeding shows it binds nothing.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg, err := config.Parse([]byte(`{
  "servers": [{"listeners": [{"name": "h", "address": "` + taken.Addr().String() + `",
    "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}]}],
    "routers": [{"router_config_name": "r", "virtual_hosts": [{"domains": ["*"],
      "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}]}],
  "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:2"}]}]},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.UDSDir = t.TempDir()
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if st := s.getState(); st != StateStarting {
		t.Errorf("state after Init = %s, want %s", st, StateStarting)
	}

	// A config that validates but cannot be built (Validate is the caller's
	// job; here a cluster is removed behind its back) fails in Init.
	cfg.ClusterManager.Clusters = nil
	s, err = New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("Init with a missing cluster: %v", err)
	}
}
