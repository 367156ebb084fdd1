package listener

import (
	"path/filepath"
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
	if !AnyPort("tcp", "127.0.0.1:0") || AnyPort("tcp", "127.0.0.1:1") || AnyPort("unix", "/x:0") {
		t.Fatal("AnyPort misreads its input")
	}
}

func TestSameSocket(t *testing.T) {
	tests := []struct {
		a, b Spec
		want bool
	}{
		{Spec{Network: "tcp", Address: "127.0.0.1:80"}, Spec{Network: "tcp", Address: "127.0.0.1:80"}, true},
		{Spec{Network: "", Address: "127.0.0.1:80"}, Spec{Network: "tcp", Address: "127.0.0.1:80"}, true},
		{Spec{Network: "tcp", Address: "127.0.0.1:80"}, Spec{Network: "tcp", Address: "127.0.0.1:81"}, false},
		{Spec{Network: "tcp", Address: "0.0.0.0:80"}, Spec{Network: "tcp", Address: "[::]:80"}, true},
		{Spec{Network: "tcp", Address: "0.0.0.0:80"}, Spec{Network: "tcp", Address: "[::]:81"}, false},
		{Spec{Network: "tcp4", Address: "0.0.0.0:80"}, Spec{Network: "tcp4", Address: "[::]:80"}, false},
		{Spec{Network: "unix", Address: "/a"}, Spec{Network: "tcp", Address: "/a"}, false},
		{Spec{Network: "unix", Address: "/a"}, Spec{Network: "unix", Address: "/a"}, true},
	}
	for _, tt := range tests {
		if got := sameSocket(tt.a, tt.b); got != tt.want {
			t.Errorf("sameSocket(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSameAnyPortSlot(t *testing.T) {
	conf := Spec{Name: "admin", Kind: KindService, Network: "tcp", Address: "127.0.0.1:0"}
	tests := []struct {
		in   Spec
		want bool
	}{
		{Spec{Name: "admin", Kind: KindService, Network: "tcp", Address: "127.0.0.1:4000"}, true},
		{Spec{Name: "admin", Kind: KindServer, Network: "tcp", Address: "127.0.0.1:4000"}, false},
		{Spec{Name: "other", Kind: KindService, Network: "tcp", Address: "127.0.0.1:4000"}, false},
		{Spec{Name: "admin", Kind: KindService, Network: "tcp", Address: "127.0.0.2:4000"}, false},
	}
	for _, tt := range tests {
		if got := sameAnyPortSlot(conf, tt.in); got != tt.want {
			t.Errorf("sameAnyPortSlot(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
