package envoy

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultOptionsAreEnvoys(t *testing.T) {
	o := DefaultOptions()
	if o.RestartEpoch != 0 || o.BaseID != 0 || o.UseDynamicBaseID || o.DisableHotRestart {
		t.Fatalf("epoch/base id defaults wrong: %+v", o)
	}
	if o.DrainTime != 600*time.Second || o.ParentShutdownTime != 900*time.Second {
		t.Fatalf("drain %v / parent shutdown %v, want 600s / 900s", o.DrainTime, o.ParentShutdownTime)
	}
	if o.DrainStrategy != DrainGradual || o.SocketPath != "@mosnlite_domain_socket" || o.SocketMode != 0o600 {
		t.Fatalf("strategy/socket defaults wrong: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"defaults", func(*Options) {}, ""},
		{"epoch and base id", func(o *Options) { o.RestartEpoch, o.BaseID = 999, 99 }, ""},
		{"dynamic at epoch 0", func(o *Options) { o.UseDynamicBaseID = true }, ""},
		{"dynamic above epoch 0", func(o *Options) { o.UseDynamicBaseID, o.RestartEpoch = true, 1 },
			"cannot use --restart-epoch=1 with --use-dynamic-base-id"},
		{"immediate", func(o *Options) { o.DrainStrategy = DrainImmediate }, ""},
		{"unknown strategy", func(o *Options) { o.DrainStrategy = "sudden" }, `unknown drain-strategy "sudden"`},
		{"negative epoch", func(o *Options) { o.RestartEpoch = -1 }, "--restart-epoch must not be negative"},
		{"negative base id", func(o *Options) { o.BaseID = -1 }, "--base-id must be in"},
		{"huge base id", func(o *Options) { o.BaseID = MaxBaseID + 1 }, "--base-id must be in"},
		{"max base id", func(o *Options) { o.BaseID = MaxBaseID }, ""},
		{"negative drain", func(o *Options) { o.DrainTime = -time.Second }, "--drain-time-s must not be negative"},
		{"negative parent shutdown", func(o *Options) { o.ParentShutdownTime = -time.Second }, "--parent-shutdown-time-s"},
		{"zero drain", func(o *Options) { o.DrainTime, o.ParentShutdownTime = 0, 0 }, ""},
		{"empty socket path", func(o *Options) { o.SocketPath = "" }, "--socket-path must not be empty"},
		{"bare @", func(o *Options) { o.SocketPath = "@" }, "--socket-path must not be empty"},
		{"long socket path", func(o *Options) { o.SocketPath = "/" + strings.Repeat("x", 100) }, "too long"},
		{"file socket path", func(o *Options) { o.SocketPath = "/run/mosnlite/hr" }, ""},
		{"bad mode", func(o *Options) { o.SocketMode = os.ModeDir | 0o600 }, "invalid socket-mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mod(&o)
			err := o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseSocketMode(t *testing.T) {
	cases := []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"600", 0o600, true}, {"0644", 0o644, true}, {"0", 0, true}, {"777", 0o777, true},
		{"800", 0, false}, {"rw", 0, false}, {"", 0, false}, {"1777", 0, false}, {"-1", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseSocketMode(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseSocketMode(%q) = %o, %v; want %o, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestVersion(t *testing.T) {
	if got := Version(true); got != "disabled" {
		t.Fatalf("Version(true) = %q", got)
	}
	if got := Version(false); got != "2.48" {
		t.Fatalf("Version(false) = %q, want protocol.size 2.48", got)
	}
}

func TestWriteAdminAddress(t *testing.T) {
	o := DefaultOptions()
	if err := o.WriteAdminAddress("127.0.0.1:1"); err != nil {
		t.Fatalf("no path configured: %v", err)
	}
	o.AdminAddressPath = t.TempDir() + "/admin.address"
	if err := o.WriteAdminAddress("127.0.0.1:9901"); err != nil {
		t.Fatal(err)
	}
	if err := o.WriteAdminAddress("127.0.0.1:9902"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.AdminAddressPath)
	if err != nil || string(b) != "127.0.0.1:9902" {
		t.Fatalf("file holds %q, %v", b, err)
	}
	o.AdminAddressPath = t.TempDir() + "/missing/dir/file"
	if err := o.WriteAdminAddress("x"); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}
