package ident

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	abs, err := filepath.Abs("rel/x.sock")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		network, in, want string
		wantErr           bool
	}{
		{"tcp", "127.0.0.1:80", "127.0.0.1:80", false},
		{"tcp", ":8080", "0.0.0.0:8080", false},
		{"", "10.0.0.1:1", "10.0.0.1:1", false},
		{"tcp", "[::ffff:10.1.2.3]:80", "10.1.2.3:80", false},
		{"tcp", "[0:0::1]:443", "[::1]:443", false},
		{"tcp6", "[2001:db8:0:0::1]:1", "[2001:db8::1]:1", false},
		{"tcp", "127.0.0.1:0", "127.0.0.1:0", false},
		{"tcp", "localhost:80", "", true},
		{"tcp", "127.0.0.1", "", true},
		{"tcp", "127.0.0.1:70000", "", true},
		{"tcp", "127.0.0.1:http", "", true},
		{"unix", "/tmp/a/../b.sock", "/tmp/b.sock", false},
		{"unix", "rel/x.sock", abs, false},
		{"unix", "", "", true},
		{"udp", "127.0.0.1:53", "", true},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.network, tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Normalize(%q, %q) error = %v, wantErr %v", tt.network, tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("Normalize(%q, %q) = %q, want %q", tt.network, tt.in, got, tt.want)
		}
	}
}

func TestAnyPort(t *testing.T) {
	if !(Spec{Network: "tcp", Address: "127.0.0.1:0"}).AnyPort() || (Spec{Network: "tcp", Address: "127.0.0.1:1"}).AnyPort() || (Spec{Network: "unix", Address: "/x:0"}).AnyPort() {
		t.Fatal("AnyPort misreads its input")
	}
}

func TestNewAndValid(t *testing.T) {
	s, err := New("web", KindServer, "", "[::ffff:127.0.0.1]:80")
	if err != nil || s.Network != "tcp" || s.Address != "127.0.0.1:80" {
		t.Fatalf("New = %+v, %v", s, err)
	}
	if err := s.Valid(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Spec{
		{Name: "", Kind: KindServer, Network: "tcp", Address: "127.0.0.1:80"},
		{Name: strings.Repeat("n", MaxNameLen+1), Kind: KindServer, Network: "tcp", Address: "127.0.0.1:80"},
		{Name: "a", Kind: "other", Network: "tcp", Address: "127.0.0.1:80"},
		{Name: "a", Kind: KindServer, Network: "", Address: "127.0.0.1:80"},
		{Name: "a", Kind: KindServer, Network: "udp", Address: "127.0.0.1:80"},
		{Name: "a", Kind: KindServer, Network: "tcp", Address: "[::ffff:127.0.0.1]:80"},
		{Name: "a", Kind: KindServer, Network: "unix", Address: "rel.sock"},
	} {
		if err := bad.Valid(); err == nil {
			t.Errorf("Valid(%+v) = nil", bad)
		}
	}
}
