package tlsconf

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"github.com/mosnlite/mosnlite/server/tlsconf/tlstest"
	"github.com/mosnlite/mosnlite/service/stats"
)

// An HTTP listener offers h2 by ALPN (before http/1.1) when its proxy
// filter speaks HTTP/2 (Http2 or Auto), http/1.1 only when it is Http1; a
// context's alpn list is honoured in its order, less what the listener
// does not speak (with a warning). Checked on the loaded config and by the
// protocol a real handshake negotiates.
func TestHTTPListenerOffersH2ByDownstreamProtocol(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	leaf := ca.Issue(t, tlstest.Opts{DNS: []string{"srv.test"}})
	for _, c := range []struct {
		down, alpn string
		offers     []string
		warn       string // part of a warning on tls_context.alpn, "" for none
		// what a client offering h2 and http/1.1, and one offering h2 only,
		// negotiate ("!" for a refused handshake)
		both, h2only string
	}{
		{down: "", offers: []string{"http/1.1"}, both: "http/1.1", h2only: "!"},
		{down: "Http1", offers: []string{"http/1.1"}, both: "http/1.1", h2only: "!"},
		{down: "Http1", alpn: "h2,http/1.1", offers: []string{"http/1.1"}, both: "http/1.1", h2only: "!",
			warn: "h2 not offered: this HTTP listener speaks http/1.1 only (h2 needs the proxy filter's downstream_protocol Http2 or Auto)"},
		{down: "Auto", offers: []string{"h2", "http/1.1"}, both: "h2", h2only: "h2"},
		{down: "Http2", offers: []string{"h2", "http/1.1"}, both: "h2", h2only: "h2"},
		{down: "Auto", alpn: "http/1.1", offers: []string{"http/1.1"}, both: "http/1.1", h2only: "!"},
		{down: "Auto", alpn: "http/1.1,h2", offers: []string{"http/1.1", "h2"}, both: "http/1.1", h2only: "h2"},
		{down: "Http2", alpn: "h2,sofa", offers: []string{"h2"}, both: "h2", h2only: "h2",
			warn: "sofa not offered: this HTTP listener speaks h2, http/1.1 only"},
	} {
		name := c.down + "/" + c.alpn
		extra := obj{}
		if c.alpn != "" {
			extra["alpn"] = c.alpn
		}
		proxy := obj{}
		if c.down != "" {
			proxy["downstream_protocol"] = c.down
		}
		cfg := parseConfigProxy(t, nil, obj{"tls_context": leafContext(t, dir, "srv", leaf, extra)}, nil, proxy)
		l := listenerOf(cfg)
		if got := l.FilterChains[0].TLSContext.Loaded.ALPN; !slices.Equal(got, c.offers) {
			t.Errorf("%s: offers %q, want %q", name, got, c.offers)
		}
		var warned []string
		for _, w := range cfg.Warnings {
			if strings.HasSuffix(w.Path, "tls_context.alpn") {
				warned = append(warned, w.Msg)
			}
		}
		if c.warn == "" && len(warned) > 0 || c.warn != "" && !slices.ContainsFunc(warned, func(m string) bool { return strings.Contains(m, c.warn) }) {
			t.Errorf("%s: alpn warnings %q, want %q", name, warned, c.warn)
		}
		s, err := NewServer(l, ServerOptions{Registry: stats.New(), HTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		ts := serveTLS(t, s)
		for _, q := range []struct {
			client []string
			want   string
		}{{[]string{"h2", "http/1.1"}, c.both}, {[]string{"h2"}, c.h2only}, {nil, ""}} {
			conn, err := dialTLS(ts.addr(), &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool(), NextProtos: q.client})
			r := ts.next(t)
			switch {
			case q.want == "!":
				if err == nil {
					conn.Close()
					t.Errorf("%s: a client offering %q negotiated %q, want a refused handshake", name, q.client, r.proto)
				}
			case err != nil:
				t.Errorf("%s: a client offering %q: %v", name, q.client, err)
			default:
				if got := conn.ConnectionState().NegotiatedProtocol; got != q.want || r.proto != q.want {
					t.Errorf("%s: a client offering %q negotiated %q (server says %q), want %q", name, q.client, got, r.proto, q.want)
				}
				conn.Close()
			}
		}
	}
}
