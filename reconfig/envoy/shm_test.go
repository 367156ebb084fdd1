package envoy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func openShm(t *testing.T, dir string, epoch int) (*SharedMemory, error) {
	t.Helper()
	s, err := OpenSharedMemory(ShmConfig{Dir: dir, BaseID: 3, Epoch: epoch})
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

// die is a process ending without a word: its lock and mapping go, the
// flag it set stays.
func die(s *SharedMemory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lockFD >= 0 {
		unix.Close(s.lockFD)
		s.lockFD = -1
	}
	unix.Munmap(s.mem)
	s.mem = nil
}

func TestShmNameScalesBaseID(t *testing.T) {
	if got := ShmName(0); got != "/mosnlite_shared_memory_0" {
		t.Fatal(got)
	}
	if got := ShmName(12); got != "/mosnlite_shared_memory_120" {
		t.Fatal(got)
	}
}

func TestShmEpochZeroCreates(t *testing.T) {
	dir := t.TempDir()
	s, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "mosnlite_shared_memory_30"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != RegionSize {
		t.Fatalf("region mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), RegionSize)
	}
	if !s.Initializing() {
		t.Fatal("a new region must start INITIALIZING")
	}
	s.MarkInitialized()
	if s.Initializing() {
		t.Fatal("MarkInitialized did not clear the flag")
	}
	if s.Created().IsZero() {
		t.Fatal("creation time not recorded")
	}
}

func TestShmEpochZeroReplacesOldRegion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mosnlite_shared_memory_30")
	if err := os.WriteFile(path, []byte("junk from an old run"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Size() != RegionSize || fi.Mode().Perm() != 0o600 {
		t.Fatalf("old region not replaced: size %d mode %v", fi.Size(), fi.Mode().Perm())
	}
	_ = s
}

func TestShmAttachRefusesWhileParentInitializes(t *testing.T) {
	dir := t.TempDir()
	parent, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := atomic.LoadUint64(parent.word(offState))
	_, err = openShm(t, dir, 1)
	if !errors.Is(err, ErrParentInitializing) || !strings.Contains(err.Error(), "previous process is still initializing") {
		t.Fatalf("got %v, want ErrParentInitializing", err)
	}
	if after := atomic.LoadUint64(parent.word(offState)); after != before {
		t.Fatalf("refused attach changed the state word: %#x -> %#x", before, after)
	}
	parent.MarkInitialized()
	child, err := openShm(t, dir, 1)
	if err != nil {
		t.Fatalf("attach after the parent initialized: %v", err)
	}
	if !child.Initializing() || !parent.Initializing() {
		t.Fatal("the attaching child must hold INITIALIZING until it has taken over")
	}
	// A third process (epoch 2) is refused while the child takes over.
	if _, err := openShm(t, dir, 2); !errors.Is(err, ErrParentInitializing) {
		t.Fatalf("epoch 2 during epoch 1's takeover: %v", err)
	}
	// The parent cannot clear the child's flag.
	parent.MarkInitialized()
	if !child.Initializing() {
		t.Fatal("a process cleared a flag it does not own")
	}
	child.MarkInitialized()
	if child.Initializing() {
		t.Fatal("child's MarkInitialized did not clear the flag")
	}
}

func TestShmStaleInitializingOwnerIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	parent, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Epoch 0 died while initializing: its flag stays, its lock went with it.
	die(parent)
	child, err := openShm(t, dir, 1)
	if err != nil {
		t.Fatalf("stale flag blocked the attach: %v", err)
	}
	if owner := uint32(atomic.LoadUint64(child.word(offState)) >> 32); owner != child.owner || owner == parent.owner {
		t.Fatalf("flag owner %#x, want the child's %#x", owner, child.owner)
	}
}

// Pids say nothing about who initializes: two containers' processes may
// both be pid 1. The owner is the mapping's token and the lock its proof,
// so a process that marked itself initialized and then closes never
// clears a flag its successor set.
func TestShmOwnerIsNotAPid(t *testing.T) {
	dir := t.TempDir()
	parent, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent.MarkInitialized()
	child, err := openShm(t, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}
	if !child.Initializing() {
		t.Fatal("the parent's close cleared the child's INITIALIZING")
	}
	if _, err := openShm(t, dir, 2); !errors.Is(err, ErrParentInitializing) {
		t.Fatalf("epoch 2 while the child initializes: %v", err)
	}
}

func TestShmCloseReleasesAnUnfinishedTakeover(t *testing.T) {
	dir := t.TempDir()
	parent, err := openShm(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent.MarkInitialized()
	child, err := OpenSharedMemory(ShmConfig{Dir: dir, BaseID: 3, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Close(); err != nil {
		t.Fatal(err)
	}
	if parent.Initializing() {
		t.Fatal("a child that failed before taking over left INITIALIZING set")
	}
	if child.Initializing() {
		t.Fatal("closed mapping reports INITIALIZING")
	}
}

func TestShmAttachRefusesIncompatibleRegions(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mosnlite_shared_memory_30"), make([]byte, 40), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := openShm(t, dir, 1)
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "hot restart versions are not compatible") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("version", func(t *testing.T) {
		dir := t.TempDir()
		parent, err := openShm(t, dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		parent.MarkInitialized()
		atomic.StoreUint64(parent.word(offVersion), ProtocolVersion+1)
		_, err = openShm(t, dir, 1)
		if !errors.Is(err, ErrIncompatible) {
			t.Fatalf("got %v", err)
		}
		if parent.Initializing() {
			t.Fatal("an incompatible attach set INITIALIZING")
		}
	})
	t.Run("magic", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mosnlite_shared_memory_30"), make([]byte, RegionSize), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openShm(t, dir, 1); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestShmAttachWithoutRegion(t *testing.T) {
	_, err := openShm(t, t.TempDir(), 1)
	if err == nil || !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "epoch 0") {
		t.Fatalf("got %v", err)
	}
}

// The real POSIX shared memory namespace, with a base id unique to this test process.
func TestShmInDevShm(t *testing.T) {
	if _, err := os.Stat(DefaultShmDir); err != nil {
		t.Skip("no /dev/shm")
	}
	base := 300000000 + os.Getpid()%100000000
	t.Cleanup(func() { _ = RemoveSharedMemory("", base) })
	s, err := OpenSharedMemory(ShmConfig{BaseID: base})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := filepath.Join("/dev/shm", ShmName(base))
	if s.Path() != want {
		t.Fatalf("path %s, want %s", s.Path(), want)
	}
	s.MarkInitialized()
	c, err := OpenSharedMemory(ShmConfig{BaseID: base, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Initializing() {
		t.Fatal("the two mappings do not share memory")
	}
	_ = c.Close()
	if err := RemoveSharedMemory("", base); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("region still there: %v", err)
	}
}
