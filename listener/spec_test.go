package listener

import (
	"testing"
)

func TestSameSocket(t *testing.T) {
	tests := []struct {
		a, b Spec
		want bool
	}{
		{Spec{Network: "tcp", Address: "127.0.0.1:80"}, Spec{Network: "tcp", Address: "127.0.0.1:80"}, true},
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
