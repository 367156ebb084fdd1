package tlsconf

import (
	"crypto/x509"
	"time"

	"github.com/mosnlite/mosnlite/config"
	"github.com/mosnlite/mosnlite/service"
	"github.com/mosnlite/mosnlite/service/stats"
)

// certificateSet describes a context's certificates as admin /certs shows
// them; owner names the listener or cluster.
func certificateSet(m *config.TLSMaterial, serverName string, owner func(*service.CertificateSet)) service.CertificateSet {
	cs := service.CertificateSet{ServerName: serverName}
	owner(&cs)
	if len(m.Chain) > 0 {
		d := details(m.Chain[0], m.CertSource)
		// As Envoy: the chain expires when its first certificate does.
		for _, c := range m.Chain[1:] {
			if c.NotAfter.Before(d.ChainNotAfter) {
				d.ChainNotAfter = c.NotAfter
			}
		}
		cs.CertChain = append(cs.CertChain, d)
	}
	for _, ca := range m.CAs {
		cs.CACerts = append(cs.CACerts, details(ca, m.CASource))
	}
	return cs
}

func details(c *x509.Certificate, source string) service.CertificateDetails {
	d := service.CertificateDetails{
		Path: source, Serial: config.SerialHex(c), Subject: c.Subject.String(),
		DNSNames: c.DNSNames, NotBefore: c.NotBefore, NotAfter: c.NotAfter, ChainNotAfter: c.NotAfter,
	}
	for _, u := range c.URIs {
		d.URIs = append(d.URIs, u.String())
	}
	for _, ip := range c.IPAddresses {
		d.IPs = append(d.IPs, ip.String())
	}
	return d
}

// registerExpiry registers the time until expiry of a context's leaf and
// of each CA it verifies peers against.
func registerExpiry(r *stats.Registry, scope, name string, m *config.TLSMaterial, now func() time.Time) {
	if len(m.Chain) > 0 {
		leaf := m.Chain[0]
		stats.RegisterCertificateExpiry(r, scope, name, stats.TLSRoleCertChain, config.SerialHex(leaf), leaf.Subject.String(), leaf.NotAfter, now)
	}
	for _, ca := range m.CAs {
		stats.RegisterCertificateExpiry(r, scope, name, stats.TLSRoleCACert, config.SerialHex(ca), ca.Subject.String(), ca.NotAfter, now)
	}
}
