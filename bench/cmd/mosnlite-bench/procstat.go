package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on
// every Linux ABI.
const userHZ = 100

// procUsage is what /proc says about a process and its children (nginx's
// workers): CPU time used so far and resident memory now.
type procUsage struct {
	CPU time.Duration // utime + stime of every process in the tree
	RSS int64         // VmRSS summed over the tree, bytes
}

// procTree returns pid and every live process whose parent chain leads to it.
func procTree(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		parent[p] = st.ppid
	}
	if _, ok := parent[pid]; !ok {
		return nil, fmt.Errorf("process %d is gone", pid)
	}
	var out []int
	for p := range parent {
		for q, hops := p, 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

type statFields struct {
	ppid         int
	utime, stime uint64 // in USER_HZ ticks
}

// readStat parses /proc/PID/stat. The command name, field 2, is in
// parentheses and may contain spaces: fields are counted after its last ')'.
func readStat(pid int) (statFields, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return statFields{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (statFields, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return statFields{}, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return statFields{}, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return statFields{}, fmt.Errorf("stat: bad ppid/utime/stime %q %q %q", f[1], f[11], f[12])
	}
	return statFields{ppid: ppid, utime: ut, stime: st}, nil
}

// readRSS returns VmRSS from /proc/PID/status in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

func parseRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: VmRSS %q", rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: VmRSS %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("status: no VmRSS")
}

// usage sums CPU time and RSS over pid's process tree.
func usage(pid int) (procUsage, error) {
	pids, err := procTree(pid)
	if err != nil {
		return procUsage{}, err
	}
	var u procUsage
	var ticks uint64
	for _, p := range pids {
		st, err := readStat(p)
		if err != nil {
			continue // a worker exited between the scan and now
		}
		rss, err := readRSS(p)
		if err != nil {
			continue
		}
		ticks += st.utime + st.stime
		u.RSS += rss
	}
	u.CPU = time.Duration(ticks) * (time.Second / userHZ)
	return u, nil
}

// selfCPU is the CPU time this process has used (user + system), to the
// microsecond.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
