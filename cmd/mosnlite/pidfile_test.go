package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestPidFileWriteAndRemove(t *testing.T) {
	dir := t.TempDir()
	p := pidFile{path: filepath.Join(dir, "run", "mosn.pid")} // the directory is created, as MOSN does
	if err := p.write(101); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.path)
	if err != nil || string(b) != "101\n" {
		t.Fatalf("content %q, %v; want MOSN's \"PID\\n\"", b, err)
	}
	if st, _ := os.Stat(p.path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	// A successor writes its own pid over it.
	if err := p.write(202); err != nil {
		t.Fatal(err)
	}
	// The old process stops: the file names the successor, so it stays.
	if removed, err := p.removeIfOwn(101); err != nil || removed {
		t.Fatalf("old process removed the successor's pid file: %v %v", removed, err)
	}
	if b, _ := os.ReadFile(p.path); string(b) != "202\n" {
		t.Fatalf("content %q after the old process stopped", b)
	}
	// The last one stops for good: gone.
	if removed, err := p.removeIfOwn(202); err != nil || !removed {
		t.Fatalf("final stop: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(p.path); !os.IsNotExist(err) {
		t.Fatalf("pid file still there: %v", err)
	}
	if removed, err := p.removeIfOwn(202); err != nil || removed {
		t.Errorf("removing a missing pid file: %v %v", removed, err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(filepath.Dir(p.path))
	if len(ents) != 0 {
		t.Errorf("left in the directory: %v", ents)
	}
	// No path: nothing happens.
	if err := (pidFile{}).write(1); err != nil {
		t.Error(err)
	}
}

func TestPidFileSuccessorWriteNeverLost(t *testing.T) {
	// An old process stopping at the moment its successor writes must not
	// remove the successor's file: both hold the directory lock.
	p := pidFile{path: filepath.Join(t.TempDir(), "mosn.pid")}
	for i := 0; i < 200; i++ {
		if err := p.write(1); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = p.write(2) }()
		go func() { defer wg.Done(); _, _ = p.removeIfOwn(1) }()
		wg.Wait()
		if b, err := os.ReadFile(p.path); err != nil || string(b) != "2\n" {
			t.Fatalf("round %d: pid file %q, %v; want the successor's", i, b, err)
		}
	}
}
