package service

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/mosnlite/mosnlite/service/stats"
)

// admin serves the admin API for one process.
type admin struct {
	info  Info
	reg   *stats.Registry
	clock func() time.Time
	log   *logrus.Entry
	prom  http.Handler // /stats/prometheus: the registry alone, no Go/process metrics
}

// endpoint is one admin route: a method-qualified ServeMux pattern and its help.
type endpoint struct {
	pattern string
	help    string
	handle  http.HandlerFunc
}

// NewAdminHandler returns the admin API. info must not be nil; a nil reg
// serves empty stats, a nil clock means time.Now, a nil log discards.
//
// Read-only endpoints answer GET and HEAD; /quitquitquit and /drain_listeners
// change state and answer POST only. Any other method gets 405.
func NewAdminHandler(info Info, reg *stats.Registry, clock func() time.Time, log *logrus.Entry) http.Handler {
	if reg == nil {
		reg = stats.New()
	}
	if clock == nil {
		clock = time.Now
	}
	a := &admin{info: info, reg: reg, clock: clock, log: orDiscard(log)}
	a.prom = newStatsPrometheus(reg)

	endpoints := []endpoint{
		{"GET /server_info", "process: pid, version, state, generation, draining pid, uptime", a.serverInfo},
		{"GET /listeners", "listeners and their bound addresses; ?format=json for Envoy's shape, ?format=text for name::address lines", a.listeners},
		{"GET /config_dump", "the effective configuration", a.configDump},
		{"GET /certs", "the TLS certificates in use (Envoy's shape): subject, SANs, serial, validity, days until expiration", a.certs},
		{"GET /stats", "every stat as name: value lines, histograms as count, sum and percentiles; ?filter=REGEX, ?format=json|prometheus", a.stats},
		{"GET /stats/prometheus", "every stat in the Prometheus format (OpenMetrics if asked), named as /metrics names them", a.prom.ServeHTTP},
		{"GET /ready", "200 LIVE when serving, 503 and the state otherwise", a.ready},
		{"GET /hot_restart_version", "the hot restart compatibility version", a.hotRestartVersion},
		{"POST /drain_listeners", "begin draining the proxy listeners", a.drainListeners},
		{"POST /quitquitquit", "stop gracefully", a.quit},
	}
	mux := http.NewServeMux()
	for _, e := range endpoints {
		mux.HandleFunc(e.pattern, e.handle)
	}
	help := helpText(endpoints)
	showHelp := func(w http.ResponseWriter, r *http.Request) { a.writeText(w, http.StatusOK, help) }
	mux.HandleFunc("GET /{$}", showHelp)
	mux.HandleFunc("GET /help", showHelp)
	return noCache(mux)
}

func helpText(endpoints []endpoint) string {
	var b strings.Builder
	b.WriteString("admin commands are:\n")
	for _, e := range endpoints {
		method, path, _ := strings.Cut(e.pattern, " ")
		fmt.Fprintf(&b, "  %-5s %-22s %s\n", method, path, e.help)
	}
	return b.String()
}

// noCache marks every admin answer as not cacheable and not to be sniffed.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache, max-age=0")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// newStatsPrometheus serves the registry alone (no Go or process metrics),
// named as the registry's Exposition says: with Envoy's naming, the shape
// of Envoy's own /stats/prometheus.
func newStatsPrometheus(reg *stats.Registry) http.Handler {
	preg := prometheus.NewRegistry()
	if err := preg.Register(reg.Collector()); err != nil {
		// An unchecked collector on an empty registry cannot clash; answer 500 if it ever does.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, fmt.Sprintf("admin: register stats collector: %v", err), http.StatusInternalServerError)
		})
	}
	return exposition(preg, nil)
}

func (a *admin) serverInfo(w http.ResponseWriter, r *http.Request) {
	a.writeJSON(w, newServerInfoJSON(a.info.ServerInfo(), a.clock(), a.info.HotRestartVersion()))
}

func (a *admin) listeners(w http.ResponseWriter, r *http.Request) {
	ls := a.info.Listeners()
	switch format := r.URL.Query().Get("format"); format {
	case "json":
		a.writeJSON(w, newEnvoyListeners(ls))
	case "text":
		var b strings.Builder
		for _, l := range ls {
			fmt.Fprintf(&b, "%s::%s\n", l.Name, l.Address)
		}
		a.writeText(w, http.StatusOK, b.String())
	case "":
		out := make([]listenerJSON, 0, len(ls))
		for _, l := range ls {
			out = append(out, listenerJSON(l))
		}
		a.writeJSON(w, out)
	default:
		a.writeText(w, http.StatusBadRequest, fmt.Sprintf("unknown format %q: want json or text\n", format))
	}
}

func (a *admin) configDump(w http.ResponseWriter, r *http.Request) {
	b, err := a.info.ConfigDump()
	if err != nil {
		a.log.WithError(err).Warn("admin: config dump failed")
		a.writeText(w, http.StatusInternalServerError, fmt.Sprintf("config dump: %v\n", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	a.write(w, b)
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var filter *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			a.writeText(w, http.StatusBadRequest, fmt.Sprintf("bad filter: %v\n", err))
			return
		}
		filter = re
	}
	switch format := q.Get("format"); format {
	case "":
		var buf bytes.Buffer
		if err := a.reg.WriteText(&buf); err != nil {
			a.writeText(w, http.StatusInternalServerError, err.Error()+"\n")
			return
		}
		a.writeText(w, http.StatusOK, filterStatLines(buf.String(), filter))
	case "json":
		a.writeJSON(w, newStatsJSON(a.reg, filter))
	case "prometheus":
		a.prom.ServeHTTP(w, r)
	default:
		a.writeText(w, http.StatusBadRequest, fmt.Sprintf("unknown format %q: want json or prometheus\n", format))
	}
}

// filterStatLines keeps the "name: value" lines whose name matches re (all if nil).
func filterStatLines(text string, re *regexp.Regexp) string {
	if re == nil {
		return text
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name := line
		if i := strings.LastIndex(line, ": "); i >= 0 {
			name = line[:i]
		}
		if re.MatchString(name) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	if a.info.Ready() {
		a.writeText(w, http.StatusOK, "LIVE\n")
		return
	}
	state := strings.ToUpper(a.info.ServerInfo().State)
	if state == "" {
		state = "NOT READY"
	}
	a.writeText(w, http.StatusServiceUnavailable, state+"\n")
}

func (a *admin) hotRestartVersion(w http.ResponseWriter, r *http.Request) {
	a.writeText(w, http.StatusOK, a.info.HotRestartVersion()+"\n")
}

func (a *admin) drainListeners(w http.ResponseWriter, r *http.Request) {
	a.log.WithField("remote", r.RemoteAddr).Info("admin: drain_listeners requested")
	a.info.DrainListeners()
	a.writeText(w, http.StatusOK, "OK\n")
}

// quit answers first, then calls Quit in its own goroutine: Quit may shut
// down this very server, which waits for this handler to return.
func (a *admin) quit(w http.ResponseWriter, r *http.Request) {
	a.log.WithField("remote", r.RemoteAddr).Info("admin: quitquitquit requested")
	w.Header().Set("Connection", "close")
	a.writeText(w, http.StatusOK, "OK\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go a.info.Quit()
}

func (a *admin) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		a.log.WithError(err).Error("admin: encode json")
		a.writeText(w, http.StatusInternalServerError, "encode json failed\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	a.write(w, append(b, '\n'))
}

func (a *admin) writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	a.write(w, []byte(s))
}

func (a *admin) write(w http.ResponseWriter, b []byte) {
	if _, err := w.Write(b); err != nil {
		a.log.WithError(err).Debug("admin: write response")
	}
}

// orDiscard returns log, or a logger that writes nowhere if log is nil.
func orDiscard(log *logrus.Entry) *logrus.Entry {
	if log != nil {
		return log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
