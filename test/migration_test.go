package test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// streamByte is byte off of the stream a worker with seed sends: the
// reader recomputes it, so every byte echoed back is checked.
func streamByte(seed, off uint64) byte {
	x := off*0x9E3779B97F4A7C15 ^ seed
	x ^= x >> 29
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 32
	return byte(x)
}

// streams are long-lived TCP connections through an echo backend: each
// worker dials once and never again, writes continuously (random chunk
// sizes) while a reader checks every byte that comes back; at stop it
// half-closes and expects every byte and then a clean EOF.
type streams struct {
	written, read atomic.Int64
	mu            sync.Mutex
	local         map[int]string // worker → local address of its only connection
	readBy        map[int]*atomic.Int64
}

func newStreams() *streams {
	return &streams{local: map[int]string{}, readBy: map[int]*atomic.Int64{}}
}

// progress returns how many bytes each worker has read back so far.
func (s *streams) progress() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int64{}
	for w, n := range s.readBy {
		out[w] = n.Load()
	}
	return out
}

// waitProgress waits until every one of n workers has read back at least
// min more bytes than in before.
func (s *streams) waitProgress(t *testing.T, n int, before map[int]int64, min int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := s.progress()
		ok := len(now) == n
		for w := range now {
			if now[w]-before[w] < min {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams made no progress within %s: before %v, now %v", timeout, before, now)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *streams) worker(target string, pause time.Duration) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			t.fail("stream %d: dial: %v", worker, err)
			return
		}
		defer c.Close()
		readN := &atomic.Int64{}
		s.mu.Lock()
		s.local[worker] = c.LocalAddr().String()
		s.readBy[worker] = readN
		s.mu.Unlock()
		seed := uint64(worker)*7919 + 1

		var wrote int64
		readDone := make(chan error, 1)
		go func() {
			buf := make([]byte, 32<<10)
			var off uint64
			for {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := c.Read(buf)
				for i := 0; i < n; i++ {
					if buf[i] != streamByte(seed, off) {
						readDone <- fmt.Errorf("byte %d: got %#x, want %#x", off, buf[i], streamByte(seed, off))
						return
					}
					off++
				}
				readN.Add(int64(n))
				s.read.Add(int64(n))
				if err == io.EOF {
					readDone <- nil
					return
				}
				if err != nil {
					readDone <- fmt.Errorf("read after %d bytes: %w", off, err)
					return
				}
			}
		}()
		rng := rand.New(rand.NewSource(int64(seed)))
		chunk := make([]byte, 8<<10)
		for !stopped(stop) {
			n := 1 + rng.Intn(len(chunk))
			for i := 0; i < n; i++ {
				chunk[i] = streamByte(seed, uint64(wrote)+uint64(i))
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(chunk[:n]); err != nil {
				t.fail("stream %d: write after %d bytes: %v", worker, wrote, err)
				return
			}
			wrote += int64(n)
			s.written.Add(int64(n))
			select {
			case err := <-readDone:
				t.fail("stream %d: %v", worker, err)
				return
			default:
			}
			time.Sleep(pause)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.fail("stream %d: half-close: %v", worker, err)
			return
		}
		if err := <-readDone; err != nil {
			t.fail("stream %d: %v", worker, err)
			return
		}
		if got := readN.Load(); got != wrote {
			t.fail("stream %d: wrote %d bytes, %d came back before EOF", worker, wrote, got)
			return
		}
		if c.LocalAddr().String() != s.local[worker] {
			t.fail("stream %d: local address changed", worker)
			return
		}
		t.ok.Add(1)
	}
}

var gaugeLine = regexp.MustCompile(`(?m)^(mosnlite_\w+(?:\{[^}]*\})?) ([0-9.e+-]+)$`)

// metric returns the value of the series whose name is name and whose
// labels include every one of labels (`key="value"`), summed.
func metric(t *testing.T, p ports, name string, labels ...string) float64 {
	t.Helper()
	_, page := get(t, p.metricsURL())
	sum := 0.0
	for _, m := range gaugeLine.FindAllStringSubmatch(page, -1) {
		if m[1] != name && !strings.HasPrefix(m[1], name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// waitMetric polls until metric(...) == want.
func waitMetric(t *testing.T, p ports, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metric(t, p, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitOnlyListening waits until pid holds no socket but its listening ones
// and connections to the given upstream addresses (a connection pool): every
// moved connection, and every duplicate made to move it, is closed. A socket
// that is neither (one whose connection has ended but that an fd still
// holds, or a unix connection) counts as leaked.
func waitOnlyListening(t *testing.T, pid int, upstreams ...string) {
	t.Helper()
	allowed := map[string]bool{"0000": true} // listening TCP sockets have no remote port
	for _, u := range upstreams {
		_, port, _ := net.SplitHostPort(u)
		allowed[fmt.Sprintf("%04X", atoi(port))] = true
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := map[string]bool{} // socket inodes that may stay
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(b), "\n")[1:] {
				if fs := strings.Fields(line); len(fs) > 9 {
					if _, port, found := strings.Cut(fs[2], ":"); found && allowed[port] {
						ok[fs[9]] = true
					}
				}
			}
		}
		b, _ := os.ReadFile("/proc/net/unix")
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) > 6 {
				if flags, err := strconv.ParseUint(fs[3], 16, 32); err == nil && flags&0x10000 != 0 {
					ok[fs[6]] = true // listening: reconfig.sock
				}
			}
		}
		var leaked []string
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range ents {
			target, err := os.Readlink(dir + "/" + en.Name())
			if ino, isSocket := strings.CutPrefix(target, "socket:["); err == nil && isSocket && !ok[strings.TrimSuffix(ino, "]")] {
				leaked = append(leaked, target)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still holds %d sockets of ended connections or their duplicates: %v", pid, len(leaked), leaked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const ackLine = `handoff: successor acked`

// upgradeTimed starts the next generation, waits for it to serve, and
// returns it with how long the old one took from its ack to its exit.
func upgradeTimed(t *testing.T, old *proc, name, cfg string, generation int) (*proc, time.Duration) {
	t.Helper()
	mark := old.out.mark()
	next := startProc(t, name, "start", "-c", cfg)
	old.waitLogAfter(mark, ackLine, readyTimeout)
	acked := time.Now()
	waitReady(next, generation)
	if code := old.wait(15 * time.Second); code != 0 {
		t.Fatalf("generation %d exited %d after handing off", generation-1, code)
	}
	return next, time.Since(acked)
}

// summary returns the old process's migration summary fields.
func summary(t *testing.T, p *proc) map[string]int {
	t.Helper()
	line := p.waitLog(`connection migration summary`, time.Second)
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`(\w+_(?:tcp|http_tunnel|http)|pending_bytes_moved)=(\d+)`).FindAllStringSubmatch(line, -1) {
		out[m[1]] = atoi(m[2])
	}
	return out
}

func TestMigrationTCPStreamsAcross20Upgrades(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	echo := newEchoBackend(t)
	tcpPort := freePort(t)
	config := func(i int) string {
		cfg := mosnConfig(dir+"/uds", p, "30s", []obj{tcpListener("tcp", addr(tcpPort), "echo")}, nil,
			[]obj{cluster("echo", echo.addr())})
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	cur := startMosn(t, "gen1", config(1), p)

	const nStreams, upgrades = 8, 20
	st := newStreams()
	l := newLoad()
	l.run("tcp streams", nStreams, st.worker(addr(tcpPort), time.Millisecond))
	defer l.finish()
	st.waitProgress(t, nStreams, nil, 1, 10*time.Second)

	var worst time.Duration
	pending := 0
	for i := 2; i <= upgrades+1; i++ {
		before := st.progress()
		var took time.Duration
		old := cur
		cur, took = upgradeTimed(t, old, fmt.Sprintf("gen%d", i), config(i), i)
		worst = max(worst, took)
		if took > 2*time.Second {
			t.Errorf("upgrade %d: the old process exited %s after its ack, want within 2s", i-1, took)
		}
		s := summary(t, old)
		if s["moved_tcp"] != nStreams || s["failed_tcp"] != 0 || s["drained_tcp"] != 0 {
			t.Errorf("upgrade %d: migration summary %v, want %d tcp sessions moved, none failed or drained", i-1, s, nStreams)
		}
		pending += s["pending_bytes_moved"]
		// Every stream goes on, in the new process.
		st.waitProgress(t, nStreams, before, 128<<10, 10*time.Second)
	}
	l.finish()
	tl := l.byName["tcp streams"]
	t.Logf("%d upgrades, %d streams: %d bytes each way (%d moved in flight), slowest exit %s after the ack; %s",
		upgrades, nStreams, st.written.Load(), pending, worst.Round(time.Millisecond), tl)
	if tl.failed.Load() != 0 || tl.ok.Load() != nStreams {
		t.Fatalf("streams: %s", tl)
	}
	waitOnlyListening(t, cur.pid(), echo.addr())
	// Counters carried over: every byte counted once, across 21 processes.
	waitMetric(t, p, float64(st.written.Load()), "mosnlite_listener_downstream_cx_rx_bytes_total", `listener="tcp"`)
	waitMetric(t, p, float64(st.read.Load()), "mosnlite_listener_downstream_cx_tx_bytes_total", `listener="tcp"`)
	waitMetric(t, p, nStreams*upgrades, "mosnlite_server_connections_migrated_total", `listener="tcp"`, `kind="tcp"`)
	waitMetric(t, p, 0, "mosnlite_server_connection_migrations_failed_total")
	waitMetric(t, p, nStreams, "mosnlite_listener_downstream_cx_total", `listener="tcp"`)
}

// keepAliveClients are HTTP/1.1 clients that each keep one connection for
// the whole test and pause between requests; some pipeline two requests at
// a time. Any error, any non-200 answer, or a Connection: close is a failure.
func keepAliveClients(target string, pipelined func(worker int) bool, requests *atomic.Int64) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, worker int) {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			t.fail("client %d: dial: %v", worker, err)
			return
		}
		defer c.Close()
		local := c.LocalAddr().String()
		br := bufio.NewReader(c)
		rng := rand.New(rand.NewSource(int64(worker)))
		for n := 0; !stopped(stop); n++ {
			time.Sleep(time.Duration(50+rng.Intn(151)) * time.Millisecond)
			batch := 1
			if pipelined(worker) {
				batch = 2
			}
			var req strings.Builder
			for k := 0; k < batch; k++ {
				fmt.Fprintf(&req, "GET /c%d/r%d/%d HTTP/1.1\r\nHost: test\r\n\r\n", worker, n, k)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, req.String()); err != nil {
				t.fail("client %d request %d: write: %v", worker, n, err)
				return
			}
			for k := 0; k < batch; k++ {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.fail("client %d request %d.%d: %v", worker, n, k, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("web GET /c%d/r%d/%d ", worker, n, k)
				if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) {
					t.fail("client %d request %d.%d: %d %q %v", worker, n, k, resp.StatusCode, body, err)
					return
				}
				if resp.Close {
					t.fail("client %d request %d.%d: Connection: close", worker, n, k)
					return
				}
				requests.Add(1)
			}
		}
		if c.LocalAddr().String() != local {
			t.fail("client %d: local address changed", worker)
			return
		}
		t.ok.Add(1)
	}
}

func TestMigrationHTTPKeepAliveAcrossUpgrades(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	web := newSlowishBackend(t)
	httpPort := freePort(t)
	config := func(i int) string {
		cfg := mosnConfig(dir+"/uds", p, "30s", []obj{httpListener("web", addr(httpPort), "r")},
			[]obj{router("r", "web")}, []obj{cluster("web", web)})
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	cur := startMosn(t, "gen1", config(1), p)

	const clients, upgrades = 8, 20
	var requests atomic.Int64
	l := newLoad()
	l.run("http keep-alive, pausing", clients, keepAliveClients(addr(httpPort), func(w int) bool { return w%4 == 3 }, &requests))
	defer l.finish()
	waitFor := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for requests.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d requests answered, want %d", requests.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(clients)
	moved, pending, worst := 0, 0, time.Duration(0)
	for i := 2; i <= upgrades+1; i++ {
		old := cur
		var took time.Duration
		cur, took = upgradeTimed(t, old, fmt.Sprintf("gen%d", i), config(i), i)
		worst = max(worst, took)
		if took > 2*time.Second {
			t.Errorf("upgrade %d: the old process exited %s after its ack, want within 2s", i-1, took)
		}
		s := summary(t, old)
		if s["moved_http"] != clients || s["failed_http"] != 0 {
			t.Errorf("upgrade %d: migration summary %v, want %d http connections moved", i-1, s, clients)
		}
		moved += s["moved_http"]
		pending += s["pending_bytes_moved"]
		waitFor(requests.Load() + clients)
	}
	l.finish()
	tl := l.byName["http keep-alive, pausing"]
	t.Logf("%d upgrades, %d clients: %d requests, %d connection moves (%d buffered bytes moved), slowest exit %s after the ack; %s",
		upgrades, clients, requests.Load(), moved, pending, worst.Round(time.Millisecond), tl)
	if tl.failed.Load() != 0 || tl.ok.Load() != clients {
		t.Fatalf("clients: %s", tl)
	}
	waitOnlyListening(t, cur.pid(), web)
	// One connection per client across every generation; every request counted.
	waitMetric(t, p, clients, "mosnlite_listener_downstream_cx_total", `listener="web"`)
	waitMetric(t, p, float64(requests.Load()), "mosnlite_http_downstream_rq_total", `listener="web"`, `status_class="2xx"`)
}

func TestMigrationDisabledListenerDrains(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	echo := newEchoBackend(t)
	movePort, pinPort := freePort(t), freePort(t)
	config := func(i int) string {
		pinned := tcpListener("pinned", addr(pinPort), "echo")
		pinned["disable_migration"] = true
		cfg := mosnConfig(dir+"/uds", p, "30s", []obj{tcpListener("moves", addr(movePort), "echo"), pinned}, nil,
			[]obj{cluster("echo", echo.addr())})
		return writeJSON(t, dir, fmt.Sprintf("c%d.json", i), cfg)
	}
	old := startMosn(t, "gen1", config(1), p)

	moving, pinned := newStreams(), newStreams()
	lm, lp := newLoad(), newLoad()
	lm.run("moving stream", 1, moving.worker(addr(movePort), time.Millisecond))
	lp.run("pinned stream", 1, pinned.worker(addr(pinPort), time.Millisecond))
	defer lm.finish()
	defer lp.finish()
	moving.waitProgress(t, 1, nil, 1, 10*time.Second)
	pinned.waitProgress(t, 1, nil, 1, 10*time.Second)

	next := startProc(t, "gen2", "start", "-c", config(2))
	waitReady(next, 2)
	waitMetric(t, p, 1, "mosnlite_server_connections_migrated_total", `listener="moves"`)
	// Both streams go on; the old process stays for the pinned one.
	mb, pb := moving.progress(), pinned.progress()
	moving.waitProgress(t, 1, mb, 256<<10, 10*time.Second)
	pinned.waitProgress(t, 1, pb, 256<<10, 10*time.Second)
	if !old.running() {
		t.Fatal("the old process exited while it still held the session of a listener with disable_migration")
	}
	// The pinned session ends: the old process has nothing left and goes.
	lp.finish()
	ended := time.Now()
	if code := old.wait(5 * time.Second); code != 0 {
		t.Fatalf("old exited %d", code)
	}
	t.Logf("old process exited %s after the pinned session ended", time.Since(ended).Round(time.Millisecond))
	old.waitLog(`connection migration summary.*drained_tcp=1 .*moved_tcp=1\b`, time.Second)
	lm.finish()
	for _, l := range []*load{lm, lp} {
		for _, name := range l.order {
			if tl := l.byName[name]; tl.failed.Load() != 0 || tl.ok.Load() != 1 {
				t.Errorf("%s: %s", name, tl)
			}
		}
	}
	waitMetric(t, p, 1, "mosnlite_server_connections_migrated_total", `listener="moves"`)
	waitMetric(t, p, 0, "mosnlite_server_connections_migrated_total", `listener="pinned"`)
}

// rawFrame is one handoff frame as the fake successor below reads it.
type rawFrameMsg struct {
	typ     byte
	payload []byte
	fds     []int
}

// takeOffersAndDie plays a successor that takes connections for targets
// (listener and kind) and dies after the old process's commit, before any
// result: it returns the offers it got, whose sockets it has closed, as
// every one it held closes when a process dies.
func takeOffersAndDie(t *testing.T, uds string, targets []obj) []rawFrameMsg {
	t.Helper()
	c, hcc := fakeSuccessor(t, uds)
	defer c.Close()
	hc := hcc.(*net.UnixConn)
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(10 * time.Second))
	var received []int
	defer func() {
		for _, fd := range received {
			syscall.Close(fd)
		}
	}()
	man, err := readFrameFDs(hc)
	received = append(received, man.fds...)
	if err != nil || man.typ != 1 {
		t.Fatalf("manifest: type %d, %v", man.typ, err)
	}
	ack, _ := json.Marshal(map[string]interface{}{"pid": os.Getpid(), "migration": targets})
	if err := writeRawFrame(hc, 2, ack); err != nil {
		t.Fatal(err)
	}
	var offers []rawFrameMsg
	for {
		f, err := readFrameFDs(hc)
		received = append(received, f.fds...)
		if err != nil {
			t.Fatalf("after %d offers: %v", len(offers), err)
		}
		if f.typ == 16 {
			offers = append(offers, f)
		}
		if f.typ == 17 {
			return offers
		}
	}
}

// readFrameFDs reads one frame off hc with any fds that come with it.
func readFrameFDs(hc *net.UnixConn) (rawFrameMsg, error) {
	var m rawFrameMsg
	read := func(b []byte) error {
		oob := make([]byte, syscall.CmsgSpace(253*4))
		for got := 0; got < len(b); {
			n, oobn, _, _, err := hc.ReadMsgUnix(b[got:], oob)
			if oobn > 0 {
				msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn])
				if perr != nil {
					return perr
				}
				for i := range msgs {
					fds, _ := syscall.ParseUnixRights(&msgs[i])
					m.fds = append(m.fds, fds...)
				}
			}
			got += n
			if err != nil {
				return err
			}
			if n == 0 {
				return io.EOF
			}
		}
		return nil
	}
	h := make([]byte, 10)
	if err := read(h); err != nil {
		return m, err
	}
	if string(h[:4]) != "MLR1" {
		return m, fmt.Errorf("bad magic %q", h[:4])
	}
	m.typ = h[4]
	m.payload = make([]byte, binary.BigEndian.Uint32(h[6:]))
	return m, read(m.payload)
}

func writeRawFrame(w io.Writer, typ byte, payload []byte) error {
	h := make([]byte, 10, 10+len(payload))
	copy(h, "MLR1")
	h[4] = typ
	binary.BigEndian.PutUint32(h[6:], uint32(len(payload)))
	_, err := w.Write(append(h, payload...))
	return err
}

// A successor that dies in the middle of a migration: it acks, offering to
// take every connection, receives the offers (and the sockets) and the
// commit, and vanishes without a result. Deterministic: it dies exactly
// between the two phases. Every connection goes on in the old process.
func TestMigrationSuccessorDiesMidMigration(t *testing.T) {
	dir := t.TempDir()
	p := newPorts(t)
	echo := newEchoBackend(t)
	web := newHTTPBackend(t, "web")
	slow := newHeldBackend(t)
	tcpPort, httpPort := freePort(t), freePort(t)
	slowRoute := obj{"match": obj{"prefix": "/slow"}, "route": obj{"cluster_name": "slow"}}
	cfg := mosnConfig(dir+"/uds", p, "30s",
		[]obj{tcpListener("tcp", addr(tcpPort), "echo"), httpListener("web", addr(httpPort), "r")},
		[]obj{router("r", "web", slowRoute)},
		[]obj{cluster("echo", echo.addr()), cluster("web", web.addr()), cluster("slow", slow.addr())})
	old := startMosn(t, "gen1", writeJSON(t, dir, "c1.json", cfg), p)

	const nStreams = 4
	st := newStreams()
	l := newLoad()
	l.run("tcp streams", nStreams, st.worker(addr(tcpPort), time.Millisecond))
	defer l.finish()
	st.waitProgress(t, nStreams, nil, 1, 10*time.Second)

	// An idle keep-alive HTTP connection (offered), and one with a request
	// in flight all through the migration (not offered: it was to move once
	// answered).
	idle := dialHTTP(t, addr(httpPort))
	if resp := idle.roundTrip(t, "/before"); resp.Close {
		t.Fatal("keep-alive refused before any upgrade")
	}
	busy := dialHTTP(t, addr(httpPort))
	busy.send(t, "/slow")
	slow.waitHeld(t)

	mark := old.out.mark()
	offers := takeOffersAndDie(t, dir+"/uds", []obj{{"listener": "tcp", "kind": "tcp"}, {"listener": "web", "kind": "http"}})
	sockets := 0
	for _, f := range offers {
		sockets += len(f.fds)
	}
	if len(offers) != nStreams+1 || sockets != 2*nStreams+1 {
		t.Fatalf("got %d offers with %d sockets, want %d and %d", len(offers), sockets, nStreams+1, 2*nStreams+1)
	}

	old.waitLogAfter(mark, `migration: batch failed`, 5*time.Second)
	// The streams go on in the old process, every byte checked.
	st.waitProgress(t, nStreams, st.progress(), 256<<10, 10*time.Second)
	// The request in flight is answered, then its connection closes at the
	// boundary, as in a drain.
	slow.release()
	if resp := busy.read(t); !resp.Close {
		t.Error("the request in flight was answered without Connection: close")
	}
	// The idle connection drains: closed cleanly (FIN, no reset).
	idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection after the failed move: read %d, %v; want a clean EOF", n, err)
	}
	l.finish()
	tl := l.byName["tcp streams"]
	if tl.failed.Load() != 0 || tl.ok.Load() != nStreams {
		t.Fatalf("streams: %s", tl)
	}
	line := old.waitLogAfter(mark, `connection migration summary`, 10*time.Second)
	for _, want := range []string{"moved_tcp=0", "moved_http=0", fmt.Sprintf("failed_tcp=%d", nStreams), "failed_http=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %s", line, want)
		}
	}
	if code := old.wait(5 * time.Second); code != 0 {
		t.Fatalf("old exited %d", code)
	}
}

// httpClientConn is one raw keep-alive client connection.
type httpClientConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHTTP(t *testing.T, address string) *httpClientConn {
	t.Helper()
	c, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &httpClientConn{c: c, br: bufio.NewReader(c)}
}

func (h *httpClientConn) send(t *testing.T, path string) {
	t.Helper()
	h.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(h.c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func (h *httpClientConn) read(t *testing.T) *http.Response {
	t.Helper()
	h.c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

func (h *httpClientConn) roundTrip(t *testing.T, path string) *http.Response {
	t.Helper()
	h.send(t, path)
	return h.read(t)
}

// newSlowishBackend answers like the "web" backend after 0–30 ms, so that
// upgrades find requests in flight.
func newSlowishBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.Intn(31)) * time.Millisecond)
		fmt.Fprintf(w, "web %s %s xff=%s", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// heldBackend answers every request only once released.
type heldBackend struct {
	ln      net.Listener
	held    chan struct{}
	rel     chan struct{}
	relOnce sync.Once
}

func newHeldBackend(t *testing.T) *heldBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &heldBackend{ln: ln, held: make(chan struct{}, 16), rel: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.held <- struct{}{}
		<-b.rel
		io.WriteString(w, "released")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		b.release()
		srv.Close()
	})
	return b
}

func (b *heldBackend) addr() string { return b.ln.Addr().String() }
func (b *heldBackend) release()     { b.relOnce.Do(func() { close(b.rel) }) }

func (b *heldBackend) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-b.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}
}
