package test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mosnlite/mosnlite/service/stats/histsample"
)

// Continuity checks, scrape after scrape, that nothing a Prometheus server
// reads as a counter goes backwards: a counter's value, and every
// histogram's _count, _sum, cumulative classic buckets and (in a protobuf
// scrape) native buckets, zero bucket included. It is generic over every
// series of the scrape, so it covers the data plane's histograms as soon as
// they move. It keeps each series' last value for the whole test: a series
// that vanishes and comes back lower is caught too.
type continuity struct {
	mu         sync.Mutex
	last       map[string]histsample.Histogram // by family and labels
	counters   map[string]float64
	maxCount   map[string]uint64 // by family: the highest _count seen
	steps      map[string]int    // by family: scrapes in which some series' _count grew
	scrapes    int
	violations []string
	broken     int
}

func newContinuity() *continuity {
	return &continuity{last: map[string]histsample.Histogram{}, counters: map[string]float64{}, maxCount: map[string]uint64{}, steps: map[string]int{}}
}

func (c *continuity) violate(format string, args ...interface{}) {
	c.broken++
	if len(c.violations) < 10 {
		c.violations = append(c.violations, fmt.Sprintf(format, args...))
	}
}

// carried reports whether a family is one of mosnlite's, which an upgrade
// carries over (in either naming), rather than the Go runtime's or the
// process's own.
func carried(family string) bool {
	return strings.HasPrefix(family, "mosnlite_") || strings.HasPrefix(family, "envoy_")
}

// seriesKey names a series: its family and its labels (sorted by the parsers).
func seriesKey(family string, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(family)
	for _, lp := range m.GetLabel() {
		fmt.Fprintf(&b, ",%s=%q", lp.GetName(), lp.GetValue())
	}
	return b.String()
}

// fromDTO turns an exposed histogram into a state: classic buckets from the
// cumulative ones (the +Inf bucket, listed or implied, is the count), and
// native buckets from their spans and deltas when the scrape has them.
func fromDTO(family string, h *dto.Histogram) (histsample.Histogram, error) {
	out := histsample.Histogram{Name: family, Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	var cum uint64
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		if b.GetCumulativeCount() < cum {
			return out, fmt.Errorf("cumulative bucket le=%v holds %d, fewer than the one below (%d)", b.GetUpperBound(), b.GetCumulativeCount(), cum)
		}
		out.Bounds = append(out.Bounds, b.GetUpperBound())
		out.Counts = append(out.Counts, b.GetCumulativeCount()-cum)
		cum = b.GetCumulativeCount()
	}
	if out.Count < cum {
		return out, fmt.Errorf("count %d below the last finite bucket's %d", out.Count, cum)
	}
	out.Counts = append(out.Counts, out.Count-cum)
	if h.Schema != nil {
		out.Schema, out.ZeroThreshold, out.ZeroCount = h.GetSchema(), h.GetZeroThreshold(), h.GetZeroCount()
		var idx int32
		var n int64
		d := 0
		for i, sp := range h.GetPositiveSpan() {
			if i == 0 {
				idx = sp.GetOffset()
			} else {
				idx += sp.GetOffset()
			}
			for k := uint32(0); k < sp.GetLength(); k, idx = k+1, idx+1 {
				if d >= len(h.GetPositiveDelta()) {
					return out, errors.New("native spans longer than their deltas")
				}
				n += h.GetPositiveDelta()[d]
				d++
				if n < 0 {
					return out, fmt.Errorf("native bucket %d holds %d", idx, n)
				}
				if n > 0 {
					out.Native = append(out.Native, histsample.Bucket{Index: idx, Count: uint64(n)})
				}
			}
		}
		if err := out.Validate(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// observe checks one scrape against the earlier scrapes of the same source
// (one scraper, whose scrapes are sequential, as a Prometheus server's are).
func (c *continuity) observe(source string, fams []*dto.MetricFamily) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scrapes++
	grew := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := source + " " + seriesKey(f.GetName(), m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				if !carried(f.GetName()) {
					continue // the Go and process collectors' own: each process starts at zero
				}
				v := m.GetCounter().GetValue()
				if prev, ok := c.counters[key]; ok && v < prev {
					c.violate("%s: counter %s went back: %v → %v", source, key, prev, v)
				}
				c.counters[key] = v
			case dto.MetricType_HISTOGRAM:
				now, err := fromDTO(f.GetName(), m.GetHistogram())
				if err != nil {
					c.violate("%s: histogram %s: %v", source, key, err)
					continue
				}
				prev, seen := c.last[key]
				if seen {
					if now.Sum < prev.Sum {
						c.violate("%s: %s_sum went back: %v → %v", source, key, prev.Sum, now.Sum)
					}
					if _, err := histsample.Sub(now, prev); err != nil {
						c.violate("%s: %s went back (count %d → %d): %v", source, key, prev.Count, now.Count, err)
					}
					if now.Count > prev.Count {
						grew[f.GetName()] = true
					}
				}
				c.last[key] = now
				c.maxCount[f.GetName()] = max(c.maxCount[f.GetName()], now.Count)
			}
		}
	}
	for name := range grew {
		c.steps[name]++
	}
}

// report fails t on any violation and returns a summary.
func (c *continuity) report(t *testing.T) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken > 0 {
		t.Errorf("%d values went backwards in %d scrapes; first: %s", c.broken, c.scrapes, strings.Join(c.violations, "\n"))
	}
	return fmt.Sprintf("%d scrapes, %d histogram series and %d counters checked", c.scrapes, len(c.last), len(c.counters))
}

// scrapeFamilies fetches url with accept (text when ""), and parses it.
func scrapeFamilies(client *http.Client, url, accept string) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var out []*dto.MetricFamily
	if accept == "" {
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			return nil, err
		}
		for _, f := range fams {
			out = append(out, f)
		}
		return out, nil
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
}

const protobufAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

// scraper polls url until stop, as Prometheus would, only faster: every
// scrape must answer, and goes through c.
func scraper(url, accept string, keepAlive bool, c *continuity) func(<-chan struct{}, *tally, int) {
	return func(stop <-chan struct{}, t *tally, _ int) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
		source := url
		if accept != "" {
			source += " (protobuf)"
		}
		for !stopped(stop) {
			fams, err := scrapeFamilies(client, url, accept)
			if err != nil {
				t.fail("scrape %s: %v", source, err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			t.ok.Add(1)
			c.observe(source, fams)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// histCount reads the _count of the one series of histogram family name.
func histCount(t *testing.T, url, name string) uint64 {
	t.Helper()
	f := scrape(t, url)[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: %v", name, f)
	}
	return f.GetMetric()[0].GetHistogram().GetSampleCount()
}

// waitHistCount polls until histogram family name counts want (bounded).
func waitHistCount(t *testing.T, url, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := histCount(t, url, name)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s counts %d, want %d", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const continuityUpgrades = 10

// The data plane's histograms in the continuity test's config, by what
// they time, in naming ("" or "envoy").
type dataPlaneFamilies struct{ requests, upstream, connects, sessions string }

func dataPlaneHistograms(naming string) dataPlaneFamilies {
	if naming == "envoy" {
		return dataPlaneFamilies{"envoy_http_downstream_rq_time", "envoy_cluster_upstream_rq_time",
			"envoy_cluster_upstream_cx_connect_ms", "envoy_listener_downstream_cx_length_ms"}
	}
	return dataPlaneFamilies{"mosnlite_http_downstream_rq_duration_seconds", "mosnlite_cluster_upstream_rq_duration_seconds",
		"mosnlite_cluster_upstream_cx_connect_duration_seconds", "mosnlite_tcp_session_duration_seconds"}
}

func (f dataPlaneFamilies) all() []string {
	return []string{f.requests, f.upstream, f.connects, f.sessions}
}

// histTotals sums, per family, the _count of every series in one scrape of url.
func histTotals(t *testing.T, url string, families []string) map[string]uint64 {
	t.Helper()
	fams := scrape(t, url)
	out := map[string]uint64{}
	for _, f := range families {
		for _, m := range fams[f].GetMetric() {
			out[f] += m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// waitTotals scrapes url until done accepts the totals of families
// (bounded), and returns the last ones.
func waitTotals(t *testing.T, url string, families []string, done func(map[string]uint64) bool) map[string]uint64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := histTotals(t, url, families)
		if done(got) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runContinuity drives a mosnlite through continuityUpgrades upgrades
// (upgrade returns the next generation once the previous one has exited)
// under HTTP keep-alive and TCP stream load, while scrapers read every
// target continuously; then it checks that nothing went backwards, that
// the handoff and migration histograms count one per upgrade, and that the
// scrapers saw them move.
func runContinuity(t *testing.T, e *obsEnv, first *proc, upgrade func(old *proc, gen int) *proc, targets map[string][]string) {
	c := newContinuity()
	l := newLoad()
	l.run("http keep-alive", 4, keepAliveHTTP(addr(e.httpPort), "/"))
	l.run("tcp streams", 2, tcpStreams(addr(e.tcpPort), 20, 2*time.Millisecond))
	var names []string
	for url, accepts := range targets {
		for _, accept := range accepts {
			name := "scrape " + url + " " + accept
			names = append(names, name)
			l.run(name, 1, scraper(url, accept, accept == "", c))
		}
	}
	sort.Strings(names)
	defer l.finish()
	waitOK(t, l.byName["http keep-alive"], 50, 10*time.Second)
	metrics := e.p.metricsURL()
	dp := dataPlaneHistograms(e.naming)
	totals := histTotals(t, metrics, dp.all())
	cur := first
	for gen := 2; gen <= continuityUpgrades+1; gen++ {
		before := map[string]int64{}
		for _, n := range names {
			before[n] = l.byName[n].ok.Load()
		}
		cur = upgrade(cur, gen)
		// Every scraper reads the new generation before the next upgrade.
		for _, n := range names {
			waitOK(t, l.byName[n], before[n]-l.byName[n].ok.Load()+2, 10*time.Second)
		}
		// And the data plane's histograms grow in it: requests, upstream
		// and connect times, sessions.
		prev := totals
		totals = waitTotals(t, metrics, dp.all(), func(got map[string]uint64) bool {
			for _, f := range dp.all() {
				if got[f] <= prev[f] {
					return false
				}
			}
			return true
		})
		for _, f := range dp.all() {
			if totals[f] <= prev[f] {
				t.Errorf("generation %d: %s did not grow (%d, before the upgrade %d)", gen, f, totals[f], prev[f])
			}
		}
	}
	handoff, migration := "mosnlite_server_handoff_duration_seconds", "mosnlite_server_connection_migration_duration_seconds"
	waitHistCount(t, metrics, handoff, continuityUpgrades)
	waitHistCount(t, metrics, migration, continuityUpgrades)
	// The last upgrade is recorded, with what it moved (in either style, as
	// soon as the predecessor said its migration was over).
	info := waitFamily(t, metrics, "mosnlite_server_upgrade_info")["mosnlite_server_upgrade_info"].GetMetric()
	labels := map[string]string{}
	for _, lp := range info[0].GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	if labels["generation"] != fmt.Sprint(continuityUpgrades+1) || labels["migrated_connections"] == "0" || labels["handoff_ms"] == "0.0" {
		t.Errorf("upgrade_info %v", labels)
	}
	for _, n := range names {
		waitOK(t, l.byName[n], 2, 10*time.Second) // scraped after the last counts arrived
	}
	l.finish()
	for _, n := range append([]string{"http keep-alive", "tcp streams"}, names...) {
		if tl := l.byName[n]; tl.failed.Load() != 0 {
			t.Errorf("%s: %s", n, tl)
		}
	}
	// Every request and session of the run, in whichever generation it
	// ended, is in the last generation's histograms exactly once: each
	// keep-alive request answered (downstream and upstream); each TCP
	// session the load finished, plus at most one per stream worker that
	// it stopped in the middle.
	requests, sessions := uint64(l.byName["http keep-alive"].ok.Load()), uint64(l.byName["tcp streams"].ok.Load())
	final := waitTotals(t, metrics, dp.all(), func(got map[string]uint64) bool {
		return got[dp.requests] >= requests && got[dp.upstream] >= requests && got[dp.sessions] >= sessions
	})
	if final[dp.requests] != requests || final[dp.upstream] != requests {
		t.Errorf("%d keep-alive requests answered over %d upgrades; the last generation's histograms count %d downstream, %d upstream",
			requests, continuityUpgrades, final[dp.requests], final[dp.upstream])
	}
	if final[dp.sessions] < sessions || final[dp.sessions] > sessions+2 {
		t.Errorf("%d TCP sessions finished (2 streams stopped mid-way at most); the last generation's histogram counts %d",
			sessions, final[dp.sessions])
	}
	summary := c.report(t)
	c.mu.Lock()
	for _, name := range []string{handoff, migration} {
		if c.maxCount[name] != continuityUpgrades || c.steps[name] < continuityUpgrades/2 {
			t.Errorf("the scrapers saw %s reach %d in %d steps, want %d in about one step per upgrade", name, c.maxCount[name], c.steps[name], continuityUpgrades)
		}
	}
	c.mu.Unlock()
	t.Logf("%d upgrades: %s; data plane in the last generation: %v; %s", continuityUpgrades, summary, final, l.report())
	_ = cur
}

// migrated checks that p heard from its predecessor that the migration was
// over (then it recorded the upgrade, without waiting for the end of a
// drain or, in Envoy's style, for the parent's termination).
func migrated(p *proc) *proc {
	p.waitLog(`msg="predecessor's connection migration over".* moved=[1-9]`, time.Second)
	return p
}

// TestHistogramsContinueAcrossUpgrades: across 10 MOSN-style upgrades under
// load, with every target scraped continuously — /metrics in the text
// format and in protobuf with native buckets, and in Envoy's naming
// /metrics and admin /stats/prometheus — no histogram _count, _sum or
// bucket and no counter ever goes backwards, and the handoff and migration
// histograms count 10.
func TestHistogramsContinueAcrossUpgrades(t *testing.T) {
	t.Run("native", func(t *testing.T) {
		e := newObsEnvWith(t, "", true)
		gen1 := startMosn(t, "gen1", e.cfg, e.p)
		runContinuity(t, e, gen1, func(old *proc, gen int) *proc { return migrated(e.upgrade(t, old, gen)) },
			map[string][]string{e.p.metricsURL(): {"", protobufAccept}})
	})
	t.Run("envoy naming", func(t *testing.T) {
		e := newObsEnvWith(t, "envoy", false)
		gen1 := startMosn(t, "gen1", e.cfg, e.p)
		runContinuity(t, e, gen1, func(old *proc, gen int) *proc { return migrated(e.upgrade(t, old, gen)) },
			map[string][]string{e.p.metricsURL(): {""}, e.p.adminURL("/stats/prometheus"): {""}})
	})
}

// TestHistogramsContinueAcrossEnvoyEpochs: the same across 10 Envoy hot
// restarts (epochs 0 → 10): each child merges its parent's histograms, and
// nothing goes backwards in a text or protobuf (native) scrape.
func TestHistogramsContinueAcrossEnvoyEpochs(t *testing.T) {
	obs := newObsEnvWith(t, "", true)
	e := &envoyEnv{upgradeEnv: obs.upgradeEnv, cfg: obs.cfg, base: 5000 + os.Getpid()%40000}
	p0 := e.epoch(0)
	e.waitGeneration(1)
	runContinuity(t, obs, p0, func(old *proc, gen int) *proc {
		next := e.epoch(gen-1, "--parent-shutdown-time-s", "2")
		e.waitGeneration(gen)
		if code := old.wait(15 * time.Second); code != 0 {
			t.Fatalf("epoch %d exited %d", gen-2, code)
		}
		return migrated(next)
	}, map[string][]string{obs.p.metricsURL(): {"", protobufAccept}})
}

// TestContinuityCatchesAStepBack: the checker itself, on scrapes made up
// here — a bucket, a sum, a native bucket or a counter that goes back is
// caught; growth is not.
func TestContinuityCatchesAStepBack(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	f := func(v float64) *float64 { return &v }
	hist := func(count uint64, sum float64, le1 uint64, native ...int64) []*dto.MetricFamily {
		h := &dto.Histogram{SampleCount: u(count), SampleSum: f(sum), Bucket: []*dto.Bucket{{UpperBound: f(0.1), CumulativeCount: u(le1)}}}
		if native != nil {
			s, z := int32(3), uint64(0)
			h.Schema, h.ZeroThreshold, h.ZeroCount = &s, f(1e-9), &z
			off, n := int32(-10), uint32(len(native))
			h.PositiveSpan = []*dto.BucketSpan{{Offset: &off, Length: &n}}
			h.PositiveDelta = native
		}
		name := "mosnlite_h_seconds"
		typ := dto.MetricType_HISTOGRAM
		return []*dto.MetricFamily{{Name: &name, Type: &typ, Metric: []*dto.Metric{{Histogram: h}}}}
	}
	counter := func(v float64) []*dto.MetricFamily {
		name, typ := "mosnlite_c_total", dto.MetricType_COUNTER
		return []*dto.MetricFamily{{Name: &name, Type: &typ, Metric: []*dto.Metric{{Counter: &dto.Counter{Value: &v}}}}}
	}
	goCounter := func(v float64) []*dto.MetricFamily {
		name, typ := "go_memstats_mallocs_total", dto.MetricType_COUNTER
		return []*dto.MetricFamily{{Name: &name, Type: &typ, Metric: []*dto.Metric{{Counter: &dto.Counter{Value: &v}}}}}
	}
	for _, tc := range []struct {
		name   string
		scrape [][]*dto.MetricFamily
		bad    bool
	}{
		{"growth", [][]*dto.MetricFamily{hist(2, 1, 1, 1, 0), hist(3, 1.5, 2, 2, -1)}, false},
		{"count", [][]*dto.MetricFamily{hist(3, 1, 1), hist(2, 1, 1)}, true},
		{"sum", [][]*dto.MetricFamily{hist(2, 1, 1), hist(2, 0.9, 1)}, true},
		{"bucket", [][]*dto.MetricFamily{hist(2, 1, 2), hist(3, 1, 1)}, true},
		{"native bucket", [][]*dto.MetricFamily{hist(2, 1, 1, 2), hist(2, 1, 1, 1, 0)}, true},
		{"a process's own counter", [][]*dto.MetricFamily{goCounter(5), goCounter(1)}, false},
		{"counter", [][]*dto.MetricFamily{counter(5), counter(4)}, true},
	} {
		c := newContinuity()
		for _, s := range tc.scrape {
			c.observe("test", s)
		}
		if got := c.broken > 0; got != tc.bad {
			t.Errorf("%s: caught=%v, want %v (%v)", tc.name, got, tc.bad, c.violations)
		}
	}
}
