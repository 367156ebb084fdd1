package stats

import "time"

// TLS series: handshakes on a listener (downstream) and to a cluster's hosts
// (upstream), their failures by reason, and how long each certificate in
// use has until it expires.
const (
	TLSDownstreamHandshakes = "tls.downstream_handshakes_total"
	TLSDownstreamResumed    = "tls.downstream_sessions_resumed_total"
	TLSDownstreamFailures   = "tls.downstream_handshake_failures_total"
	TLSUpstreamHandshakes   = "tls.upstream_handshakes_total"
	TLSUpstreamResumed      = "tls.upstream_sessions_resumed_total"
	TLSUpstreamFailures     = "tls.upstream_handshake_failures_total"
	// TLSCertificateExpiry is in seconds (Prometheus' base unit): divide by
	// 86400 for days. Negative once expired.
	TLSCertificateExpiry = "tls.certificate_seconds_until_expiration"
)

// Reasons a TLS handshake fails, the reason label of the failure counters.
// Every one exists, at zero, for every TLS listener and cluster.
const (
	TLSReasonTimeout   = "timeout" // not done within the handshake timeout
	TLSReasonClosed    = "closed"  // the peer closed or reset the connection during it
	TLSReasonNotTLS    = "not_tls" // the first bytes are not a TLS record
	TLSReasonVersion   = "version" // no protocol version in common
	TLSReasonCipher    = "cipher"  // no cipher suite or key exchange group in common
	TLSReasonALPN      = "alpn"    // no application protocol in common
	TLSReasonNoCert    = "no_client_cert"
	TLSReasonBadCert   = "bad_client_cert" // a client certificate that does not verify
	TLSReasonBadServer = "bad_server_cert" // an upstream certificate that does not verify (upstream only)
	TLSReasonAlert     = "peer_alert"      // the peer ended it with an alert (it refused our certificate, say)
	TLSReasonOther     = "other"
)

// TLSDownstreamReasons are the reasons a listener's handshake fails.
func TLSDownstreamReasons() []string {
	return []string{TLSReasonTimeout, TLSReasonClosed, TLSReasonNotTLS, TLSReasonVersion, TLSReasonCipher,
		TLSReasonALPN, TLSReasonNoCert, TLSReasonBadCert, TLSReasonAlert, TLSReasonOther}
}

// TLSUpstreamReasons are the reasons an upstream handshake fails.
func TLSUpstreamReasons() []string {
	return []string{TLSReasonTimeout, TLSReasonClosed, TLSReasonVersion, TLSReasonCipher,
		TLSReasonALPN, TLSReasonBadServer, TLSReasonAlert, TLSReasonOther}
}

// TLSMetrics are the handshake series of one TLS listener or cluster.
type TLSMetrics struct {
	handshakes *Counter
	resumed    *Counter
	failures   map[string]*Counter // by reason; read-only
}

// NewTLSListenerMetrics registers the handshake series of listener.
func NewTLSListenerMetrics(r *Registry, listener string) *TLSMetrics {
	return newTLSMetrics(r, "listener", listener, TLSDownstreamHandshakes, TLSDownstreamResumed, TLSDownstreamFailures,
		TLSDownstreamReasons(), "TLS handshakes with clients")
}

// NewTLSClusterMetrics registers the handshake series of cluster's upstream connections.
func NewTLSClusterMetrics(r *Registry, cluster string) *TLSMetrics {
	return newTLSMetrics(r, "cluster", cluster, TLSUpstreamHandshakes, TLSUpstreamResumed, TLSUpstreamFailures,
		TLSUpstreamReasons(), "TLS handshakes with upstream hosts")
}

func newTLSMetrics(r *Registry, key, name, done, resumed, failed string, reasons []string, what string) *TLSMetrics {
	m := &TLSMetrics{
		handshakes: r.Counter(done, what+" that completed.", key, name),
		resumed:    r.Counter(resumed, what+" that resumed an earlier session (no full handshake).", key, name),
		failures:   make(map[string]*Counter, len(reasons)),
	}
	for _, reason := range reasons {
		m.failures[reason] = r.Counter(failed, what+" that failed, by reason.", key, name, "reason", reason)
	}
	return m
}

// Handshake counts a completed handshake.
func (m *TLSMetrics) Handshake(resumed bool) {
	m.handshakes.Inc()
	if resumed {
		m.resumed.Inc()
	}
}

// Failure counts a failed handshake; an unknown reason counts as other.
func (m *TLSMetrics) Failure(reason string) {
	c, ok := m.failures[reason]
	if !ok {
		c = m.failures[TLSReasonOther]
	}
	c.Inc()
}

// Certificate roles, the role label of TLSCertificateExpiry.
const (
	TLSRoleCertChain = "cert_chain" // a certificate this process presents
	TLSRoleCACert    = "ca_cert"    // a CA it verifies peers against
)

// RegisterCertificateExpiry registers the time until notAfter of one
// certificate in use, read at each scrape with now. scope is "listener" or
// "cluster", name the listener's or cluster's.
func RegisterCertificateExpiry(r *Registry, scope, name, role, serial, subject string, notAfter time.Time, now func() time.Time) {
	r.GaugeFunc(TLSCertificateExpiry,
		"Seconds until a certificate in use expires (negative once expired): the certificates a listener or a cluster presents (role cert_chain; the leaf of each chain) and the CAs it verifies peers against (role ca_cert).",
		func() float64 { return notAfter.Sub(now()).Truncate(time.Second).Seconds() },
		"scope", scope, "name", name, "role", role, "serial", serial, "subject", subject)
}
