package envoy

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultShmDir is where Linux keeps POSIX shared memory (shm_open's namespace).
const DefaultShmDir = "/dev/shm"

// The shared memory region: six little-endian-in-host-order 64-bit words.
// Only the state word is written after creation, always atomically.
const (
	offMagic   = 0  // regionMagic once the header is complete
	offSize    = 8  // RegionSize of the creator
	offVersion = 16 // ProtocolVersion of the creator
	offState   = 24 // low 32 bits: flags; high 32 bits: the owner token of the mapping that set flagInitializing
	offEpoch   = 32 // restart epoch of the process that last attached
	offCreated = 40 // creation time (unix nanoseconds) by epoch 0

	// RegionSize is the size of the shared memory region in bytes.
	RegionSize = 48

	regionMagic      = 0x6d6f736e6c697465 // "mosnlite"
	flagInitializing = 1
)

var (
	// ErrParentInitializing: a process attached while the previous one had not
	// finished taking over. Nothing was changed; retry later with the same epoch.
	ErrParentInitializing = errors.New("previous process is still initializing")
	// ErrIncompatible: the region was made by a binary of another hot restart version.
	ErrIncompatible = errors.New("hot restart versions are not compatible")
)

// ShmName is the POSIX shared memory name for a base id: /mosnlite_shared_memory_{base_id*10}.
func ShmName(baseID int) string {
	return "/mosnlite_shared_memory_" + strconv.Itoa(baseID*10)
}

// ShmConfig says which region to open and how.
type ShmConfig struct {
	Dir    string // DefaultShmDir when empty
	BaseID int
	Epoch  int
	Now    func() time.Time // time.Now when nil
}

// SharedMemory is this process's mapping of the region.
//
// Who holds INITIALIZING is not told by a pid: across PID namespaces (two
// containers of a pod sharing /dev/shm) pids collide and mean nothing. The
// mapping that sets the flag holds an exclusive flock on the region's file
// until it clears it; the kernel drops the lock when that process dies, so
// a set flag with nobody holding the lock is stale. The owner word in the
// state is a random token of the mapping, so that only its setter clears it.
type SharedMemory struct {
	path  string
	owner uint32

	mu     sync.Mutex
	mem    []byte // nil once closed
	lockFD int    // the region's file, flocked while this mapping initializes; -1 otherwise
}

// OpenSharedMemory opens the region for cfg.Epoch. Epoch 0 removes any old
// region and creates a fresh one (mode 0600) with INITIALIZING set. A later
// epoch attaches, refuses a region of another size or version (ErrIncompatible)
// and sets INITIALIZING; if a live process holds it (its flock on the
// region) it returns ErrParentInitializing and changes nothing. A set flag
// whose owner has died is taken over. The flag stays set until
// MarkInitialized (or Close).
func OpenSharedMemory(cfg ShmConfig) (*SharedMemory, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultShmDir
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	path := filepath.Join(cfg.Dir, ShmName(cfg.BaseID))
	if cfg.Epoch == 0 {
		return createRegion(path, cfg)
	}
	return attachRegion(path, cfg)
}

func createRegion(path string, cfg ShmConfig) (*SharedMemory, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("envoy: remove old shared memory %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("envoy: create shared memory %s (check permissions): %w", path, err)
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	// Ours until initialized: nobody can attach before the header is whole.
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("envoy: lock shared memory %s: %w", path, err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("envoy: chmod shared memory %s: %w", path, err)
	}
	if err := unix.Ftruncate(fd, RegionSize); err != nil {
		return nil, fmt.Errorf("envoy: size shared memory %s: %w", path, err)
	}
	mem, err := unix.Mmap(fd, 0, RegionSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("envoy: map shared memory %s: %w", path, err)
	}
	owner, err := ownerToken()
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	s := &SharedMemory{path: path, owner: owner, mem: mem, lockFD: fd}
	keep = true
	atomic.StoreUint64(s.word(offSize), RegionSize)
	atomic.StoreUint64(s.word(offVersion), ProtocolVersion)
	atomic.StoreUint64(s.word(offState), flagInitializing|uint64(owner)<<32)
	atomic.StoreUint64(s.word(offEpoch), 0)
	atomic.StoreUint64(s.word(offCreated), uint64(cfg.Now().UnixNano()))
	atomic.StoreUint64(s.word(offMagic), regionMagic) // last: the header is complete
	return s, nil
}

func attachRegion(path string, cfg ShmConfig) (*SharedMemory, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("envoy: attach shared memory %s: no region: is a process of epoch %d running with this --base-id?: %w",
				path, cfg.Epoch-1, err)
		}
		return nil, fmt.Errorf("envoy: attach shared memory %s (check permissions): %w", path, err)
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("envoy: stat shared memory %s: %w", path, err)
	}
	if st.Size != RegionSize {
		// Mapping beyond the end of a shorter region would fault: refuse first.
		return nil, fmt.Errorf("envoy: shared memory %s is %d bytes, this binary expects %d: %w",
			path, st.Size, RegionSize, ErrIncompatible)
	}
	mem, err := unix.Mmap(fd, 0, RegionSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("envoy: map shared memory %s: %w", path, err)
	}
	owner, err := ownerToken()
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	s := &SharedMemory{path: path, owner: owner, mem: mem, lockFD: -1}
	if err := s.checkHeader(); err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	// The lock, not the flag, says whether someone is initializing: a live
	// holder keeps it; a dead one's went with it.
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = unix.Munmap(mem)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("envoy: shared memory %s: %w (another process holds it)", path, ErrParentInitializing)
		}
		return nil, fmt.Errorf("envoy: lock shared memory %s: %w", path, err)
	}
	if err := s.setInitializing(); err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	s.lockFD = fd
	keep = true
	atomic.StoreUint64(s.word(offEpoch), uint64(cfg.Epoch))
	return s, nil
}

// ownerToken is a random non-zero owner id for a mapping.
func ownerToken() (uint32, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("envoy: shared memory owner token: %w", err)
		}
		if v := binary.LittleEndian.Uint32(b[:]); v != 0 {
			return v, nil
		}
	}
}

func (s *SharedMemory) checkHeader() error {
	magic := atomic.LoadUint64(s.word(offMagic))
	size := atomic.LoadUint64(s.word(offSize))
	version := atomic.LoadUint64(s.word(offVersion))
	if magic != regionMagic || size != RegionSize || version != ProtocolVersion {
		return fmt.Errorf("envoy: shared memory %s holds version %d.%d (magic %#x), this binary is %s: %w",
			s.path, version, size, magic, Version(false), ErrIncompatible)
	}
	return nil
}

// setInitializing sets the INITIALIZING flag with this mapping as owner. It
// runs with the region's lock held: a flag already set is a dead owner's.
func (s *SharedMemory) setInitializing() error {
	state := s.word(offState)
	for i := 0; i < 1000; i++ {
		old := atomic.LoadUint64(state)
		nv := uint64(uint32(old)) | flagInitializing | uint64(s.owner)<<32
		if atomic.CompareAndSwapUint64(state, old, nv) {
			return nil
		}
	}
	return fmt.Errorf("envoy: shared memory %s: state word keeps changing", s.path)
}

// MarkInitialized clears INITIALIZING if this process set it: the next epoch may start now.
func (s *SharedMemory) MarkInitialized() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return
	}
	s.clearOwnFlag()
}

// clearOwnFlag clears INITIALIZING if this mapping set it, then lets go of
// the lock (in that order: whoever takes the lock next finds it clear).
func (s *SharedMemory) clearOwnFlag() {
	defer s.unlock()
	state := s.word(offState)
	for i := 0; i < 1000; i++ {
		old := atomic.LoadUint64(state)
		if old&flagInitializing == 0 || uint32(old>>32) != s.owner {
			return
		}
		if atomic.CompareAndSwapUint64(state, old, uint64(uint32(old))&^flagInitializing) {
			return
		}
	}
}

func (s *SharedMemory) unlock() {
	if s.lockFD >= 0 {
		// Explicitly: the mapping holds the open file too, so closing the
		// descriptor alone would keep the lock until the unmap.
		_ = unix.Flock(s.lockFD, unix.LOCK_UN)
		_ = unix.Close(s.lockFD)
		s.lockFD = -1
	}
}

// Initializing reports whether INITIALIZING is set, by any process.
func (s *SharedMemory) Initializing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem != nil && atomic.LoadUint64(s.word(offState))&flagInitializing != 0
}

// Created is when epoch 0 created the region.
func (s *SharedMemory) Created() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return time.Time{}
	}
	return time.Unix(0, int64(atomic.LoadUint64(s.word(offCreated))))
}

// Path is the region's file.
func (s *SharedMemory) Path() string { return s.path }

// Close unmaps the region. If this process still holds INITIALIZING (it failed
// before taking over) the flag is cleared so that a retry is not refused.
// The region itself stays: the next epoch attaches to it.
func (s *SharedMemory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return nil
	}
	s.clearOwnFlag()
	err := unix.Munmap(s.mem)
	s.mem = nil
	if err != nil {
		return fmt.Errorf("envoy: unmap shared memory %s: %w", s.path, err)
	}
	return nil
}

// RemoveSharedMemory deletes the region of a base id (dir "" means DefaultShmDir).
func RemoveSharedMemory(dir string, baseID int) error {
	if dir == "" {
		dir = DefaultShmDir
	}
	path := filepath.Join(dir, ShmName(baseID))
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("envoy: remove shared memory %s: %w", path, err)
	}
	return nil
}

// word points at the 64-bit word at off. mmap returns page-aligned memory, so
// every word is 8-byte aligned and safe for atomic access across processes.
func (s *SharedMemory) word(off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&s.mem[off]))
}
