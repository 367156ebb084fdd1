package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TLS in MOSN's shape: a listener's filter_chains[].tls_context (or
// tls_context_set, several chosen by SNI) and a cluster's tls_context. The
// shape is checked by Validate (tlsShape); the certificates, keys, CA
// bundles and session ticket keys a context that is on names — files, or
// inline PEM as MOSN allows — are read and checked by Parse (loadTLS), each
// problem with its JSON path, and kept in TLSConfig.Loaded for the server to
// build its tls.Config from. A process reads them at its start: rotating a
// certificate is an upgrade.

// DefaultTLSHandshakeTimeout bounds a listener's TLS handshake when its
// tls_handshake_timeout is not set.
const DefaultTLSHandshakeTimeout = 10 * time.Second

// Limits of what a TLS context reads.
const (
	maxTLSFileSize = 1 << 20 // a certificate chain, a key or a CA bundle
	// MaxSessionTicketKeys bounds session_ticket_keys, and the keys a
	// successor accepts from its predecessor.
	MaxSessionTicketKeys = 16
	// SessionTicketKeySize is the size of a session ticket key as used
	// (Go's crypto/tls); a key file of Envoy's 80 bytes is hashed to it.
	SessionTicketKeySize  = 32
	envoyTicketKeyFileLen = 80
)

// errTLSFileTooLarge is wrapped for a certificate, key or CA file over maxTLSFileSize.
var errTLSFileTooLarge = fmt.Errorf("larger than %d KiB", maxTLSFileSize>>10)

// TLSMaterial is a context that is on, as Parse read and resolved it.
type TLSMaterial struct {
	// Certificate is cert_chain with private_key, its Leaf parsed; nil
	// when the context has none (a cluster without a client certificate).
	Certificate *tls.Certificate
	// Chain is cert_chain's certificates, leaf first.
	Chain []*x509.Certificate
	// CertSource and CASource say where the certificates came from: the
	// file's path, or "<inline>".
	CertSource, CASource string
	// CAs is ca_cert's certificates: those a listener verifies client
	// certificates against, or a cluster the upstream's (nil: the system's).
	CAs []*x509.Certificate
	// TicketKeys are session_ticket_keys' keys, the first one encrypting.
	TicketKeys [][SessionTicketKeySize]byte

	MinVersion, MaxVersion uint16
	// CipherSuites are the TLS 1.0-1.2 suites (TLS 1.3's are not
	// configurable in Go); nil means Go's defaults.
	CipherSuites []uint16
	Curves       []tls.CurveID // nil: Go's defaults
	ALPN         []string      // the protocols offered (negotiated) in order
	// ClientAuth is how a listener asks for client certificates, from
	// verify_client and require_client_cert as MOSN maps them.
	ClientAuth tls.ClientAuthType
}

// InlineSource is TLSMaterial's CertSource or CASource for inline PEM.
const InlineSource = "<inline>"

// TLS protocol versions by MOSN's names (lower case).
var tlsVersions = map[string]uint16{
	"tls_auto": 0,
	"tlsv1_0":  tls.VersionTLS10,
	"tlsv1_1":  tls.VersionTLS11,
	"tlsv1_2":  tls.VersionTLS12,
	"tlsv1_3":  tls.VersionTLS13,
}

// Default protocol versions: TLS 1.2 and 1.3 only (MOSN's minimum is 1.0).
const (
	defaultTLSMinVersion = tls.VersionTLS12
	defaultTLSMaxVersion = tls.VersionTLS13
)

// MOSN's cipher suite names. The TLS 1.3 ones are accepted but cannot be
// chosen in Go: TLS 1.3 always offers its three suites.
var tlsCipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES256-GCM-SHA384":      tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":        tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-AES128-GCM-SHA256":      tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":        tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-WITH-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-WITH-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-AES256-CBC-SHA":           tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES128-CBC-SHA":           tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-CBC-SHA":         tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-CBC-SHA":         tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"RSA-AES256-CBC-SHA":                 tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"RSA-AES128-CBC-SHA":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-3DES-EDE-CBC-SHA":         tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	"RSA-3DES-EDE-CBC-SHA":               tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"AES256-GCM-SHA384":                  tls.TLS_AES_256_GCM_SHA384,
	"AES128-GCM-SHA256":                  tls.TLS_AES_128_GCM_SHA256,
}

// Key exchange groups by MOSN's names (lower case), and Go's hybrid
// post-quantum one (mosnlite).
var tlsCurves = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// ALPN protocol names MOSN knows; it drops any other.
var tlsALPN = []string{"h2", "http/1.1", "sofa"}

// tlsRole is what a TLS context is for: its rules differ.
type tlsRole int

const (
	tlsHTTPListener tlsRole = iota // terminates TLS in front of the HTTP proxy
	tlsTCPListener                 // terminates TLS in front of a tcp_proxy
	tlsCluster                     // the client side of upstream connections
)

func (r tlsRole) listener() bool { return r != tlsCluster }

// On reports whether the context is on (set, with status true).
func (t *TLSConfig) On() bool { return t != nil && t.Status }

// TLSContexts returns the listener's TLS contexts that are on, in order:
// its tls_context, or those of tls_context_set. None: a plain listener.
func (l *Listener) TLSContexts() []*TLSConfig {
	var out []*TLSConfig
	for i := range l.FilterChains {
		fc := &l.FilterChains[i]
		if fc.TLSContext.On() {
			out = append(out, fc.TLSContext)
		}
		for j := range fc.TLSContextSet {
			if fc.TLSContextSet[j].On() {
				out = append(out, &fc.TLSContextSet[j])
			}
		}
	}
	return out
}

// tlsShape checks a context's settings (no file is read here); nothing for
// one that is off, which MOSN ignores whole.
func (v *validator) tls(t *TLSConfig, path string, role tlsRole) {
	if !t.On() {
		return
	}
	if t.Type != "" {
		v.ps.add(field(path, "type"), "%q (a MOSN TLS extension) is not supported by mosnlite", t.Type)
	}
	if !t.ExtendVerify.IsZero() {
		v.ps.add(field(path, "extend_verify"), "MOSN's extension verification (extend_verify) is not supported by mosnlite")
	}
	if t.SdsConfig != nil && (t.SdsConfig.CertificateConfig != nil || t.SdsConfig.ValidationConfig != nil) {
		v.ps.add(field(path, "sds_source"), "certificates from SDS (MOSN's sds_source) are not supported by mosnlite: give cert_chain, private_key and ca_cert")
	}
	minV, minOK := v.tlsVersion(t.MinVersion, field(path, "min_version"))
	maxV, maxOK := v.tlsVersion(t.MaxVersion, field(path, "max_version"))
	if minOK && maxOK {
		if minV == 0 {
			minV = defaultTLSMinVersion
		}
		if maxV == 0 {
			maxV = defaultTLSMaxVersion
		}
		if minV > maxV {
			v.ps.add(field(path, "min_version"), "%q is above max_version %q", t.MinVersion, orText(t.MaxVersion, "TLSv1_3 (the default)"))
		}
	}
	for _, name := range splitList(t.CipherSuites, ":") {
		if _, ok := tlsCipherSuites[name]; !ok {
			v.ps.add(field(path, "cipher_suites"), "unknown cipher suite %q (MOSN's names: %s)", name, strings.Join(sortedKeys(tlsCipherSuites), ", "))
		}
	}
	for _, name := range splitList(t.EcdhCurves, ",") {
		if _, ok := tlsCurves[strings.ToLower(name)]; !ok {
			v.ps.add(field(path, "ecdh_curves"), "unknown curve %q (want %s)", name, strings.Join(sortedKeys(tlsCurves), ", "))
		}
	}
	hasCert, hasKey := t.CertChain != "", t.PrivateKey != ""
	switch {
	case role.listener() && !hasCert:
		v.ps.add(field(path, "cert_chain"), "required: a listener's TLS context needs its certificate")
	case role.listener() && !hasKey:
		v.ps.add(field(path, "private_key"), "required with cert_chain")
	case hasCert != hasKey:
		missing := "private_key"
		if !hasCert {
			missing = "cert_chain"
		}
		v.ps.add(field(path, missing), "required: a client certificate needs both cert_chain and private_key")
	}
	if role.listener() && t.VerifyClient && t.CACert == "" {
		v.ps.add(field(path, "ca_cert"), "required with verify_client: the CAs client certificates are verified against")
	}
	if !role.listener() && len(t.SessionTicketKeys) > 0 {
		v.ps.add(field(path, "session_ticket_keys"), "only a listener's TLS context has session ticket keys")
	}
	if n := len(t.SessionTicketKeys); n > MaxSessionTicketKeys {
		v.ps.add(field(path, "session_ticket_keys"), "%d keys, at most %d", n, MaxSessionTicketKeys)
	}
	for i, k := range t.SessionTicketKeys {
		if k == "" {
			v.ps.add(index(field(path, "session_ticket_keys"), i), "empty path")
		}
	}
}

// tlsVersion reads a MOSN protocol version name; 0 (ok) is "the default".
func (v *validator) tlsVersion(s, path string) (uint16, bool) {
	if s == "" {
		return 0, true
	}
	ver, ok := tlsVersions[strings.ToLower(s)]
	if !ok {
		v.ps.add(path, "unknown TLS version %q (want TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2 or TLSv1_3, in any case)", s)
	}
	return ver, ok
}

// tlsHostNames checks that every host of a cluster with TLS has a name to
// verify: a unix socket host has none unless server_name gives it.
func (v *validator) tlsHostNames(c *Cluster, path string) {
	t := c.TLSContext
	if !t.On() || t.ServerName != "" || t.InsecureSkip {
		return
	}
	for i, h := range c.Hosts {
		if h.TLSDisable {
			continue
		}
		if h.Network == NetworkUnix || strings.HasPrefix(h.Address, "unix:") {
			v.ps.add(field(path, "tls_context.server_name"), "required: host %d (%s) is a unix socket, which has no name to verify the upstream's certificate against", i, h.Address)
			return
		}
	}
}

// tlsLoader reads and checks what the contexts that are on name, after
// Validate found their shape right.
type tlsLoader struct {
	ps, ws *problems
	now    time.Time
	// skip says whether a problem at or inside path is already reported.
	skip func(path string) bool
}

// loadTLS fills Loaded for every context that is on, and each cluster's
// TLS. Contexts with a problem already reported are left alone.
func (c *Config) loadTLS(ps, ws *problems, now time.Time, reported []Problem) {
	ld := &tlsLoader{ps: ps, ws: ws, now: now, skip: func(path string) bool {
		for _, p := range reported {
			if covers(path, p.Path) || covers(p.Path, path) {
				return true
			}
		}
		return false
	}}
	for i := range c.Servers {
		for j := range c.Servers[i].Listeners {
			l := &c.Servers[i].Listeners[j]
			lp := index(field(index("servers", i), "listeners"), j)
			role, down := tlsHTTPListener, ""
			if f := findFilterOf(l); f != nil && f.TCP != nil {
				role = tlsTCPListener
			} else if f != nil && f.HTTP != nil {
				down = f.HTTP.DownstreamProtocol
			}
			for k := range l.FilterChains {
				fc := &l.FilterChains[k]
				fcp := index(field(lp, "filter_chains"), k)
				ld.context(fc.TLSContext, field(fcp, "tls_context"), role, down)
				for m := range fc.TLSContextSet {
					ld.context(&fc.TLSContextSet[m], index(field(fcp, "tls_context_set"), m), role, down)
				}
			}
		}
	}
	cm := &c.ClusterManager
	ld.context(cm.TLSContext, "cluster_manager.tls_context", tlsCluster, "")
	for i := range cm.Clusters {
		cl := &cm.Clusters[i]
		cp := index("cluster_manager.clusters", i)
		ld.context(cl.TLSContext, field(cp, "tls_context"), tlsCluster, "")
		cl.TLS = nil
		switch {
		case cl.ClusterManagerTLS:
			if cl.TLSContext.On() {
				ws.add(field(cp, "tls_context"), "not used: cluster_manager_tls makes the cluster use cluster_manager.tls_context (as in MOSN)")
			}
			if cm.TLSContext.On() && cm.TLSContext.Loaded != nil {
				cl.TLS = cm.TLSContext
			}
		case cl.TLSContext.On() && cl.TLSContext.Loaded != nil:
			cl.TLS = cl.TLSContext
		}
	}
}

func findFilterOf(l *Listener) *Filter {
	for i := range l.FilterChains {
		if len(l.FilterChains[i].Filters) > 0 {
			return &l.FilterChains[i].Filters[0]
		}
	}
	return nil
}

// context loads one context that is on; downstreamProtocol is an HTTP
// listener's (what its ALPN may offer).
func (ld *tlsLoader) context(t *TLSConfig, path string, role tlsRole, downstreamProtocol string) {
	if !t.On() {
		return
	}
	t.Loaded = nil
	if ld.skip(path) {
		return
	}
	m := &TLSMaterial{ClientAuth: clientAuth(t)}
	before := len(ld.ps.list)
	m.MinVersion = orVersion(t.MinVersion, defaultTLSMinVersion)
	m.MaxVersion = orVersion(t.MaxVersion, defaultTLSMaxVersion)
	if m.MinVersion < tls.VersionTLS12 {
		ld.ws.add(field(path, "min_version"), "%s allows TLS 1.0 or 1.1, which are deprecated (RFC 8996); the default is TLSv1_2", t.MinVersion)
	}
	if names := splitList(t.CipherSuites, ":"); len(names) > 0 {
		m.CipherSuites = []uint16{} // not nil: only the ones named
		var insecure []string
		for _, name := range names {
			id := tlsCipherSuites[name]
			if id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_AES_128_GCM_SHA256 {
				continue // TLS 1.3: always on in Go
			}
			if isInsecureSuite(id) {
				insecure = append(insecure, name)
			}
			m.CipherSuites = append(m.CipherSuites, id)
		}
		if len(insecure) > 0 {
			ld.ws.add(field(path, "cipher_suites"), "%s: insecure (no forward secrecy, or a weak cipher)", strings.Join(insecure, ", "))
		}
	}
	for _, name := range splitList(t.EcdhCurves, ",") {
		m.Curves = append(m.Curves, tlsCurves[strings.ToLower(name)])
	}
	m.ALPN = ld.alpn(t.ALPN, field(path, "alpn"), role, downstreamProtocol)
	if t.Fallback {
		what := "a certificate that does not load is a config error"
		if !role.listener() {
			what = "a failed upstream handshake fails the connection, and another host is tried"
		}
		ld.ws.add(field(path, "fall_back"), "ignored by mosnlite (MOSN's fallback to plaintext): %s", what)
	}
	if t.Ticket != "" {
		ld.ws.add(field(path, "ticket"), "ignored by mosnlite (unused by MOSN too; see session_ticket_keys)")
	}
	if len(t.Callbacks) > 0 {
		ld.ws.add(field(path, "callbacks"), "ignored by mosnlite (MOSN's SDS update callbacks)")
	}
	if role.listener() && t.InsecureSkip {
		ld.ws.add(field(path, "insecure_skip"), "ignored on a listener (as in MOSN): it is for upstream connections")
	}
	if !role.listener() && t.InsecureSkip {
		ld.ws.add(field(path, "insecure_skip"), "the upstream's certificate is not verified")
	}

	if t.CertChain != "" {
		certPEM, src := ld.read(t.CertChain, field(path, "cert_chain"))
		keyPEM, _ := ld.read(t.PrivateKey, field(path, "private_key"))
		if certPEM != nil && keyPEM != nil {
			ld.keyPair(m, certPEM, keyPEM, src, path)
		}
	}
	if t.CACert != "" {
		caPEM, src := ld.read(t.CACert, field(path, "ca_cert"))
		if caPEM != nil {
			certs, err := parseCertificates(caPEM)
			if err != nil {
				ld.ps.add(field(path, "ca_cert"), "%s: %v", describeSource(src), err)
			} else {
				m.CAs, m.CASource = certs, src
				for i, c := range certs {
					ld.validity(c, field(path, "ca_cert"), fmt.Sprintf("CA certificate %d (%s)", i, c.Subject))
				}
			}
		}
	}
	for i, f := range t.SessionTicketKeys {
		kp := index(field(path, "session_ticket_keys"), i)
		b, err := readFileLimit(f, 4<<10, errTLSFileTooLarge)
		if err != nil {
			ld.ps.add(kp, "%v", err)
			continue
		}
		switch len(b) {
		case SessionTicketKeySize:
			m.TicketKeys = append(m.TicketKeys, [SessionTicketKeySize]byte(b))
		case envoyTicketKeyFileLen:
			m.TicketKeys = append(m.TicketKeys, sha256.Sum256(b))
		default:
			ld.ps.add(kp, "%s: %d bytes; a session ticket key file has %d (Envoy's format: openssl rand %d) or %d",
				f, len(b), envoyTicketKeyFileLen, envoyTicketKeyFileLen, SessionTicketKeySize)
		}
	}
	if len(ld.ps.list) == before {
		t.Loaded = m
	}
}

// read returns the PEM of a value that is inline PEM (as MOSN: it contains
// "-----BEGIN") or the content of the file it names, and where it came from.
func (ld *tlsLoader) read(value, path string) ([]byte, string) {
	if strings.Contains(value, "-----BEGIN") {
		return []byte(value), InlineSource
	}
	b, err := readFileLimit(value, maxTLSFileSize, errTLSFileTooLarge)
	if err != nil {
		ld.ps.add(path, "%v", err)
		return nil, ""
	}
	return b, value
}

func describeSource(src string) string {
	if src == InlineSource {
		return "inline PEM"
	}
	return src
}

// keyPair parses cert_chain and private_key and checks that they belong together.
func (ld *tlsLoader) keyPair(m *TLSMaterial, certPEM, keyPEM []byte, src, path string) {
	chain, err := parseCertificates(certPEM)
	if err != nil {
		ld.ps.add(field(path, "cert_chain"), "%s: %v", describeSource(src), err)
		return
	}
	if err := checkKeyPEM(keyPEM); err != nil {
		ld.ps.add(field(path, "private_key"), "%v", err)
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			ld.ps.add(field(path, "private_key"), "does not match the certificate of cert_chain (%s)", chain[0].Subject)
		} else {
			ld.ps.add(field(path, "private_key"), "%v", err)
		}
		return
	}
	m.Certificate, m.Chain, m.CertSource = &pair, chain, src
	for i, c := range chain {
		what := fmt.Sprintf("certificate %s", c.Subject)
		if i > 0 {
			what = fmt.Sprintf("chain certificate %d (%s)", i, c.Subject)
		}
		ld.validity(c, field(path, "cert_chain"), what)
	}
}

// validity warns about a certificate outside its validity period: it loads
// (an expired certificate is the client's to refuse), but a warning says so.
func (ld *tlsLoader) validity(c *x509.Certificate, path, what string) {
	switch {
	case ld.now.After(c.NotAfter):
		ld.ws.add(path, "%s expired on %s (serial %s)", what, c.NotAfter.UTC().Format(time.RFC3339), SerialHex(c))
	case ld.now.Before(c.NotBefore):
		ld.ws.add(path, "%s is not valid before %s (serial %s)", what, c.NotBefore.UTC().Format(time.RFC3339), SerialHex(c))
	}
}

// SerialHex is a certificate's serial number as Envoy's /certs writes it:
// lower-case hex, no separators.
func SerialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return hex.EncodeToString(c.SerialNumber.Bytes())
}

// HTTPListenerALPN are the application protocols an HTTP listener whose
// proxy filter has downstreamProtocol speaks over TLS, in the order it
// prefers them (as Envoy and nginx order them, h2 first): the ones its
// alpn may offer (any other is dropped with a warning), and what it offers
// when alpn is empty. Http2 and Auto speak h2 and http/1.1; Http1 (or
// empty) http/1.1 only. The proxy serves each connection by the protocol
// its handshake negotiated (proxy.Handshaker).
func HTTPListenerALPN(downstreamProtocol string) []string {
	switch downstreamProtocol {
	case ProtocolHTTP2, ProtocolAuto:
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// alpn resolves a context's alpn list: MOSN's names only (others are
// dropped, as MOSN does), and for the HTTP listener and an upstream client
// only what mosnlite speaks there (HTTPListenerALPN of the listener's
// downstream protocol, down; HTTP/1.1 upstream), in the context's order.
func (ld *tlsLoader) alpn(list, path string, role tlsRole, downstreamProtocol string) []string {
	speaks := []string{"http/1.1"}
	if role == tlsHTTPListener {
		speaks = HTTPListenerALPN(downstreamProtocol)
	}
	var out, dropped []string
	for _, p := range splitList(list, ",") {
		p = strings.ToLower(p)
		switch {
		case !slices.Contains(tlsALPN, p):
			ld.ws.add(path, "%q is not a protocol MOSN knows (h2, http/1.1, sofa): not offered, as in MOSN", p)
		case role != tlsTCPListener && !slices.Contains(speaks, p):
			dropped = append(dropped, p)
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	if len(dropped) > 0 {
		where := "this HTTP listener speaks " + strings.Join(speaks, ", ") + " only"
		if role == tlsHTTPListener && !slices.Contains(speaks, "h2") {
			where += " (h2 needs the proxy filter's downstream_protocol Http2 or Auto)"
		}
		if role == tlsCluster {
			where = "mosnlite speaks HTTP/1.1 to upstreams"
		}
		ld.ws.add(path, "%s not offered: %s", strings.Join(dropped, ", "), where)
	}
	if role == tlsHTTPListener && len(out) == 0 {
		out = speaks
	}
	return out
}

// parseCertificates reads every CERTIFICATE block of a PEM bundle; other
// blocks are an error (a key in a certificate file is a mistake worth naming).
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for n := 0; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) > 0 && bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, errors.New("a PEM block after the last certificate does not parse")
	}
	return out, nil
}

// checkKeyPEM names what is wrong with a private key's PEM before
// tls.X509KeyPair does it in less helpful words.
func checkKeyPEM(b []byte) error {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return errors.New("no PEM private key found")
		}
		if blk.Type == "PRIVATE KEY" || strings.HasSuffix(blk.Type, " PRIVATE KEY") {
			if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
				return nil
			}
			if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
				return nil
			}
			if _, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
				return nil
			}
			return fmt.Errorf("the %s PEM block does not parse as a PKCS#8, PKCS#1 or EC private key", blk.Type)
		}
	}
}

// clientAuth is MOSN's mapping of verify_client and require_client_cert.
func clientAuth(t *TLSConfig) tls.ClientAuthType {
	switch {
	case t.RequireClientCert && t.VerifyClient:
		return tls.RequireAndVerifyClientCert
	case t.VerifyClient:
		return tls.VerifyClientCertIfGiven
	case t.RequireClientCert:
		return tls.RequestClientCert
	}
	return tls.NoClientCert
}

func orVersion(s string, def uint16) uint16 {
	if v := tlsVersions[strings.ToLower(s)]; v != 0 {
		return v
	}
	return def
}

func isInsecureSuite(id uint16) bool {
	for _, s := range tls.InsecureCipherSuites() {
		if s.ID == id {
			return true
		}
	}
	// RSA key exchange: no forward secrecy (Go lists these as secure).
	return id == tls.TLS_RSA_WITH_AES_128_CBC_SHA || id == tls.TLS_RSA_WITH_AES_256_CBC_SHA
}

// splitList splits a MOSN list value, trimming spaces and dropping empties.
func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
