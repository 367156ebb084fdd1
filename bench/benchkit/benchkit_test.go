package benchkit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMosnliteBinaryGiven(t *testing.T) {
	logged := false
	logf := func(string, ...any) { logged = true }
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := MosnliteBinary(context.Background(), missing, t.TempDir(), logf); err == nil || !strings.Contains(err.Error(), "mosnlite binary") {
		t.Fatalf("a missing binary: %v", err)
	}
	self := filepath.Join(t.TempDir(), "bin")
	if err := writeFile(self); err != nil {
		t.Fatal(err)
	}
	got, err := MosnliteBinary(context.Background(), self, t.TempDir(), logf)
	if err != nil || got != self || logged {
		t.Fatalf("a given binary: %q %v (built: %v)", got, err, logged)
	}
}

func TestModuleRootIsThisRepository(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The tests run in bench/benchkit: the root is two levels up and holds
	// the command the benchmarks build.
	wd, _ := os.Getwd()
	if want := filepath.Dir(filepath.Dir(wd)); root != want {
		t.Fatalf("module root %q, want %q", root, want)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "mosnlite", "main.go")); err != nil {
		t.Fatalf("no cmd/mosnlite under the module root: %v", err)
	}
}

func writeFile(path string) error { return os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755) }
