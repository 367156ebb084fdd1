package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// obsEnv is a mosnlite with an HTTP listener "web" (to cluster "backend",
// and a direct 404 on /missing) and a TCP listener "db" (to an echo
// cluster), whose metrics use naming.
type obsEnv struct {
	*upgradeEnv
	cfg    string
	naming string
}

func newObsEnv(t *testing.T, naming string) *obsEnv { return newObsEnvWith(t, naming, false) }

// newObsEnvWith is newObsEnv with metrics.native_histograms set to native.
func newObsEnvWith(t *testing.T, naming string, native bool) *obsEnv {
	e := newUpgradeEnv(t)
	cfg := mosnConfig(e.uds, e.p, "10s",
		[]obj{httpListener("web", addr(e.httpPort), "r"), tcpListener("db", addr(e.tcpPort), "echo")},
		[]obj{router("r", "backend", directRoute("/missing", 404, "no"))},
		[]obj{cluster("backend", e.web.addr()), cluster("echo", e.echo.addr())})
	if naming != "" {
		cfg["metrics"].(obj)["naming"] = naming
	}
	if native {
		cfg["metrics"].(obj)["native_histograms"] = true
	}
	return &obsEnv{upgradeEnv: e, cfg: writeJSON(t, e.dir, "c.json", cfg), naming: naming}
}

// traffic sends ok requests to the backend, one to /missing (404) and one
// TCP round trip, each on its own connection.
func (e *obsEnv) traffic(t *testing.T, ok int) {
	t.Helper()
	for i := 0; i < ok; i++ {
		if code, body := get(t, "http://"+addr(e.httpPort)+"/x"); code != 200 {
			t.Fatalf("GET /x: %d %s", code, body)
		}
	}
	if code, _ := get(t, "http://"+addr(e.httpPort)+"/missing"); code != 404 {
		t.Fatalf("GET /missing: %d", code)
	}
	c, err := net.DialTimeout("tcp", addr(e.tcpPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tcp echo: %q %v", buf, err)
	}
}

// holdConnections opens an idle HTTP keep-alive connection (after one
// request) and a TCP session, so that an upgrade has connections to move.
func (e *obsEnv) holdConnections(t *testing.T) {
	t.Helper()
	h, err := net.DialTimeout("tcp", addr(e.httpPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	fmt.Fprintf(h, "GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
	h.SetReadDeadline(time.Now().Add(5 * time.Second))
	if status, _, err := readHeaders(bufio.NewReader(h)); err != nil || !strings.Contains(status, "200") {
		t.Fatalf("keep-alive request: %q %v", status, err)
	}
	c, err := net.DialTimeout("tcp", addr(e.tcpPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// upgrade starts generation gen with the same config and waits until it
// serves and the old one has exited.
func (e *obsEnv) upgrade(t *testing.T, old *proc, gen int) *proc {
	t.Helper()
	next := startProc(t, fmt.Sprintf("gen%d", gen), "start", "-c", e.cfg)
	waitReady(next, gen)
	if code := old.wait(15 * time.Second); code != 0 {
		t.Fatalf("generation %d exited %d after the handoff", gen-1, code)
	}
	return next
}

// scrapeBody fetches url with an Accept header ("" for none).
func scrapeBody(t *testing.T, url, accept string) (http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return resp.Header, string(b)
}

// scrape parses a text exposition into its families.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := scrapeBody(t, url, "")
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// sampleNames are the names a PromQL query can select in fams: a histogram
// family X is X_bucket, X_sum and X_count.
func sampleNames(fams map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range fams {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = true
			}
			continue
		}
		out[name] = true
	}
	return out
}

// value is the one series of family name whose labels include labels (k, v pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	var found []float64
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels...) {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			found = append(found, m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			found = append(found, m.GetGauge().GetValue())
		case dto.MetricType_UNTYPED:
			found = append(found, m.GetUntyped().GetValue())
		default:
			found = append(found, float64(m.GetHistogram().GetSampleCount()))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1: %v", name, labels, len(found), f.GetMetric())
	}
	return found[0]
}

// hasLabels reports whether m's labels include labels (k, v pairs).
func hasLabels(m *dto.Metric, labels ...string) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if have[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}

// waitFamily polls url until family name appears.
func waitFamily(t *testing.T, url, name string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams := scrape(t, url)
		if fams[name] != nil {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear on %s", name, url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	labelValuesArg = regexp.MustCompile(`label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, range selectors and
// grouping clauses are removed, that are not function calls, keywords or
// parts of numbers.
func metricNames(expr string) []string {
	s := promqlString.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("0123456789.$", rune(s[loc[0]-1])) {
			continue // 1e-9, a Grafana variable
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promqlKeywords[strings.ToLower(id)] {
			continue
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNamesOfPromQL(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (listener) (rate(a_total{x="y",job=~"$job"}[$__rate_interval])) / sum(rate(a_total[5m]))`:  "a_total a_total",
		`histogram_quantile(0.99, sum by (le, cluster) (rate(h_seconds_bucket{cluster=~"$cluster"}[1h])))`: "h_seconds_bucket",
		`time() - min(start_seconds) * 1e-9 + -b > bool 0 or vector(1)`:                                    "start_seconds b",
		`max by (instance, generation) (info{k="a b"}) * 1000`:                                             "info",
		`x offset 5m unless on(instance) group_left(version) y`:                                            "x y",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// dashboardQueries returns every PromQL expression of the dashboard (panel
// targets, annotations) and the metrics its variables query.
func dashboardQueries(t *testing.T, dash map[string]interface{}) (exprs []string, variableMetrics []string) {
	t.Helper()
	var walkPanels func(ps []interface{})
	walkPanels = func(ps []interface{}) {
		for _, p := range ps {
			pm := p.(map[string]interface{})
			if sub, ok := pm["panels"].([]interface{}); ok {
				walkPanels(sub)
			}
			for _, tg := range asList(pm["targets"]) {
				if e, _ := tg.(map[string]interface{})["expr"].(string); e != "" {
					exprs = append(exprs, e)
				}
			}
		}
	}
	walkPanels(asList(dash["panels"]))
	for _, a := range asList(dash["annotations"].(map[string]interface{})["list"]) {
		if e, _ := a.(map[string]interface{})["expr"].(string); e != "" {
			exprs = append(exprs, e)
		}
	}
	for _, v := range asList(dash["templating"].(map[string]interface{})["list"]) {
		if d, _ := v.(map[string]interface{})["definition"].(string); d != "" {
			for _, m := range labelValuesArg.FindAllStringSubmatch(d, -1) {
				variableMetrics = append(variableMetrics, m[1])
			}
		}
	}
	return exprs, variableMetrics
}

func asList(v interface{}) []interface{} {
	l, _ := v.([]interface{})
	return l
}

// checkDashboard checks deploy/grafana/mosnlite.json: valid JSON, panels with
// unique ids inside the 24-column grid, every query on the dashboard's data
// source variable, every variable a query uses defined; and it returns the
// metric names its queries read.
func checkDashboard(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "mosnlite.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]interface{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("deploy/grafana/mosnlite.json is not valid JSON: %v", err)
	}
	if dash["uid"] == "" || dash["title"] == "" || dash["schemaVersion"] == nil {
		t.Errorf("dashboard lacks uid, title or schemaVersion")
	}
	vars := map[string]bool{}
	for _, v := range asList(dash["templating"].(map[string]interface{})["list"]) {
		vars[v.(map[string]interface{})["name"].(string)] = true
	}
	ids := map[float64]bool{}
	for _, p := range asList(dash["panels"]) {
		pm := p.(map[string]interface{})
		id, _ := pm["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		g := pm["gridPos"].(map[string]interface{})
		if x, w := g["x"].(float64), g["w"].(float64); x < 0 || w <= 0 || x+w > 24 {
			t.Errorf("panel %q is outside the 24-column grid: x=%v w=%v", pm["title"], x, w)
		}
		if pm["type"] == "row" {
			continue
		}
		if ds, _ := pm["datasource"].(map[string]interface{}); ds["uid"] != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable: %v", pm["title"], pm["datasource"])
		}
		if len(asList(pm["targets"])) == 0 {
			t.Errorf("panel %q has no query", pm["title"])
		}
	}
	exprs, varMetrics := dashboardQueries(t, dash)
	if len(exprs) < 30 {
		t.Fatalf("only %d queries found in the dashboard", len(exprs))
	}
	uses := map[string][]string{}
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_]\w*)`)
	for _, e := range exprs {
		for _, m := range varRef.FindAllStringSubmatch(e, -1) {
			if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
				t.Errorf("query uses undefined variable $%s: %s", m[1], e)
			}
		}
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("query reads no metric: %s", e)
		}
		for _, n := range names {
			uses[n] = append(uses[n], e)
		}
	}
	for _, n := range varMetrics {
		uses[n] = append(uses[n], "a dashboard variable")
	}
	return uses
}

// TestDashboardQueriesExistInALiveScrape checks the Grafana dashboard
// against the real binary: after traffic and an upgrade that moves
// connections, every metric the dashboard queries is in /metrics.
func TestDashboardQueriesExistInALiveScrape(t *testing.T) {
	uses := checkDashboard(t)
	e := newObsEnv(t, "")
	gen1 := startMosn(t, "gen1", e.cfg, e.p)
	e.traffic(t, 3)
	e.holdConnections(t)
	gen2 := e.upgrade(t, gen1, 2)
	e.traffic(t, 2)
	fams := waitFamily(t, e.p.metricsURL(), "mosnlite_server_upgrade_info")
	var names []string
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	// Every histogram the dashboard reads has observations after this
	// traffic (request, upstream and connect times, TCP sessions, the
	// handoff and the migration): the session that ended last is observed
	// at its close, so the scrape is repeated until they are all there.
	deadline := time.Now().Add(15 * time.Second)
	for {
		empty := emptyHistograms(fams, names)
		if len(empty) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("histograms the dashboard reads without observations after traffic and an upgrade: %v", empty)
		}
		time.Sleep(20 * time.Millisecond)
		fams = scrape(t, e.p.metricsURL())
	}
	have := sampleNames(fams)
	for _, n := range names {
		if !have[n] {
			t.Errorf("the dashboard queries %s, which a live /metrics scrape lacks (in %q)", n, uses[n][0])
		}
	}
	// The annotation's labels are filled: this upgrade moved the held connections.
	info := fams["mosnlite_server_upgrade_info"].GetMetric()[0]
	l := map[string]string{}
	for _, lp := range info.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	if l["generation"] != "2" || l["migrated_connections"] != "2" || l["handoff_ms"] == "" || l["handoff_ms"] == "0.0" {
		t.Errorf("upgrade_info labels: %v", l)
	}
	if got, want := info.GetGauge().GetValue(), value(t, fams, "mosnlite_generation_start_time_seconds"); got != want {
		t.Errorf("upgrade_info value %v, want the generation's start %v", got, want)
	}
	_ = gen2
}

// emptyHistograms lists the histogram families among names (as queried:
// X_bucket, X_sum, X_count) that fams lacks or whose series have no
// observation at all.
func emptyHistograms(fams map[string]*dto.MetricFamily, names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		fam, ok := strings.CutSuffix(n, "_bucket")
		if !ok || seen[fam] {
			continue
		}
		seen[fam] = true
		var count uint64
		for _, m := range fams[fam].GetMetric() {
			count += m.GetHistogram().GetSampleCount()
		}
		if count == 0 {
			out = append(out, fam)
		}
	}
	return out
}

func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus; .ci/run installs it): skipping the exposition lint")
	}
	// Lint findings that Envoy's own names draw (no _total on its counters,
	// _ms units): in Envoy naming they are the point, not a defect.
	envoyConventions := regexp.MustCompile(`^envoy_\w+ (counter metrics should have "_total" suffix|non-counter metrics should not have "_total" suffix|metric names should not contain abbreviated units)$`)
	for _, naming := range []string{"", "envoy"} {
		t.Run("naming="+naming, func(t *testing.T) {
			e := newObsEnv(t, naming)
			gen1 := startMosn(t, "gen1", e.cfg, e.p)
			e.traffic(t, 3)
			gen2 := e.upgrade(t, gen1, 2)
			waitFamily(t, e.p.metricsURL(), "mosnlite_server_upgrade_info")
			for _, url := range []string{e.p.metricsURL(), e.p.adminURL("/stats/prometheus")} {
				_, body := scrapeBody(t, url, "")
				cmd := exec.Command(promtool, "check", "metrics")
				cmd.Stdin = strings.NewReader(body)
				out, err := cmd.CombinedOutput()
				var unexpected []string
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if line != "" && !(naming == "envoy" && envoyConventions.MatchString(line)) {
						unexpected = append(unexpected, line)
					}
				}
				if len(unexpected) > 0 || (naming == "" && err != nil) {
					t.Errorf("promtool check metrics on %s (%v):\n%s", url, err, strings.Join(unexpected, "\n"))
				}
			}
			_ = gen2
		})
	}
}

// TestEnvoyNamingLive drives traffic through a mosnlite with Envoy's
// naming and reads the names and tags an Envoy dashboard queries, on
// /metrics and on admin /stats/prometheus, before and after an upgrade.
func TestEnvoyNamingLive(t *testing.T) {
	e := newObsEnv(t, "envoy")
	gen1 := startMosn(t, "gen1", e.cfg, e.p)
	e.traffic(t, 5)
	check := func(fams map[string]*dto.MetricFamily, epoch float64) {
		t.Helper()
		web := []string{"envoy_http_conn_manager_prefix", "web"}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "2"), 5},
			{"envoy_http_downstream_rq_xx", append(web, "envoy_response_code_class", "4"), 1},
			{"envoy_http_downstream_rq_total", web, 6},
			{"envoy_http_downstream_cx_total", web, 6},
			{"envoy_listener_downstream_cx_total", []string{"envoy_listener_address", fmt.Sprintf("127.0.0.1_%d", e.httpPort)}, 6},
			{"envoy_listener_downstream_cx_total", []string{"envoy_listener_address", fmt.Sprintf("127.0.0.1_%d", e.tcpPort)}, 1},
			{"envoy_tcp_downstream_cx_total", []string{"envoy_tcp_prefix", "db"}, 1},
			{"envoy_tcp_downstream_cx_rx_bytes_total", []string{"envoy_tcp_prefix", "db"}, 4},
			{"envoy_cluster_membership_total", []string{"envoy_cluster_name", "backend"}, 1},
			{"envoy_cluster_membership_healthy", []string{"envoy_cluster_name", "backend"}, 1},
			{"envoy_cluster_upstream_cx_connect_fail", []string{"envoy_cluster_name", "backend"}, 0},
			{"envoy_server_live", nil, 1},
			{"envoy_server_hot_restart_epoch", nil, epoch},
			{"envoy_server_hot_restart_generation", nil, epoch + 1},
		} {
			if got := value(t, fams, c.name, c.labels...); got != c.want {
				t.Errorf("epoch %v: %s%v = %v, want %v", epoch, c.name, c.labels, got, c.want)
			}
		}
		if v := value(t, fams, "envoy_cluster_upstream_cx_total", "envoy_cluster_name", "backend"); v < 1 {
			t.Errorf("envoy_cluster_upstream_cx_total = %v", v)
		}
		for _, gone := range []string{"mosnlite_http_downstream_rq_total", "mosnlite_listener_downstream_cx_total", "mosnlite_server_live"} {
			if fams[gone] != nil {
				t.Errorf("%s is exposed in Envoy naming", gone)
			}
		}
		if fams["mosnlite_build_info"] == nil || fams["mosnlite_server_upgrades_total"] == nil {
			t.Error("series without an Envoy equivalent should keep their mosnlite names")
		}
	}
	metrics := scrape(t, e.p.metricsURL())
	check(metrics, 0)
	admin := scrape(t, e.p.adminURL("/stats/prometheus"))
	check(admin, 0)
	if admin["go_goroutines"] != nil || metrics["go_goroutines"] == nil {
		t.Error("the Go collector belongs to /metrics, not to /stats/prometheus")
	}
	for name := range metrics {
		if strings.HasPrefix(name, "envoy_") && admin[name] == nil {
			t.Errorf("%s on /metrics but not on admin /stats/prometheus", name)
		}
	}
	e.upgrade(t, gen1, 2)
	check(scrape(t, e.p.metricsURL()), 1) // counters carried: the same values, one epoch later
}

// TestStartTimesTellAnUpgradeFromARestart: across an upgrade the service's
// start time stays and the generation's moves; a cold restart moves both.
func TestStartTimesTellAnUpgradeFromARestart(t *testing.T) {
	e := newObsEnv(t, "")
	before := time.Now()
	gen1 := startMosn(t, "gen1", e.cfg, e.p)
	m1 := scrape(t, e.p.metricsURL())
	svc1, g1 := value(t, m1, "mosnlite_service_start_time_seconds"), value(t, m1, "mosnlite_generation_start_time_seconds")
	if svc1 != g1 || svc1 < float64(before.Unix())-1 || svc1 > float64(time.Now().Unix())+1 {
		t.Fatalf("generation 1: service start %v, generation start %v, test began %v", svc1, g1, before.Unix())
	}
	// build_info says what `mosnlite version` says.
	out, err := exec.Command(binPath, "version").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	bi := m1["mosnlite_build_info"].GetMetric()
	if len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 {
		t.Fatalf("build_info: %v", bi)
	}
	labels := map[string]string{}
	for _, lp := range bi[0].GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	for _, k := range []string{"version", "commit", "go_version"} {
		if labels[k] == "" || !strings.Contains(string(out), labels[k]) {
			t.Errorf("build_info %s=%q, not in `mosnlite version`: %s", k, labels[k], out)
		}
	}

	gen2 := e.upgrade(t, gen1, 2)
	m2 := scrape(t, e.p.metricsURL())
	if svc2 := value(t, m2, "mosnlite_service_start_time_seconds"); svc2 != svc1 {
		t.Errorf("an upgrade changed the service start time: %v → %v", svc1, svc2)
	}
	if g2 := value(t, m2, "mosnlite_generation_start_time_seconds"); g2 <= g1 {
		t.Errorf("generation start did not move on upgrade: %v → %v", g1, g2)
	}

	gen2.signal(syscall.SIGTERM)
	if code := gen2.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	cold := startMosn(t, "cold", e.cfg, e.p)
	m3 := scrape(t, e.p.metricsURL())
	if svc3 := value(t, m3, "mosnlite_service_start_time_seconds"); svc3 <= svc1 {
		t.Errorf("a cold restart kept the service start time: %v → %v", svc1, svc3)
	}
	if m3["mosnlite_server_upgrade_info"] != nil {
		t.Error("a cold start has no upgrade record")
	}
	_ = cold
}

func TestOpenMetricsScrape(t *testing.T) {
	e := newObsEnv(t, "")
	startMosn(t, "gen1", e.cfg, e.p)
	e.traffic(t, 1)
	for _, url := range []string{e.p.metricsURL(), e.p.adminURL("/stats/prometheus")} {
		h, body := scrapeBody(t, url, "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3")
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
			t.Errorf("%s: Content-Type %q", url, ct)
		}
		if !strings.HasSuffix(body, "# EOF\n") || !strings.Contains(body, "# TYPE mosnlite_http_downstream_rq counter\n") {
			t.Errorf("%s: not OpenMetrics:\n%.2000s", url, body)
		}
	}
}
