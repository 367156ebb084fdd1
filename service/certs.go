package service

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// CertificateSet is the certificates of one TLS context: what a listener
// presents to clients (and the CAs it verifies their certificates
// against), or what a cluster presents to its upstreams (and the CAs it
// verifies theirs against).
type CertificateSet struct {
	Listener   string // the listener using it, or
	Cluster    string // the cluster
	ServerName string // the context's server_name
	CertChain  []CertificateDetails
	CACerts    []CertificateDetails
}

// CertificateDetails describes one certificate.
type CertificateDetails struct {
	Path    string // its file, or "<inline>"
	Serial  string // lower-case hex
	Subject string
	// Subject alternative names.
	DNSNames, URIs, IPs []string
	NotBefore, NotAfter time.Time
	// ChainNotAfter is when the first certificate of its chain expires
	// (NotAfter for a CA or a chain of one).
	ChainNotAfter time.Time
}

// CertsInfo is implemented by an Info whose process has TLS certificates.
type CertsInfo interface {
	Certificates() []CertificateSet
}

// certsJSON is Envoy's admin.v3.Certificates as its /certs writes it
// (protobuf JSON, field names as in the proto), with mosnlite's own
// members beside Envoy's: which listener or cluster a set is for, its
// server_name, and each certificate's subject.
type certsJSON struct {
	Certificates []certificateJSON `json:"certificates"`
}

type certificateJSON struct {
	CACert     []certDetailsJSON `json:"ca_cert"`
	CertChain  []certDetailsJSON `json:"cert_chain"`
	Listener   string            `json:"listener,omitempty"`
	Cluster    string            `json:"cluster,omitempty"`
	ServerName string            `json:"server_name,omitempty"`
}

type certDetailsJSON struct {
	Path            string    `json:"path"`
	SerialNumber    string    `json:"serial_number"`
	SubjectAltNames []sanJSON `json:"subject_alt_names"`
	// A uint64 in the proto: a string in protobuf JSON.
	DaysUntilExpiration string `json:"days_until_expiration"`
	ValidFrom           string `json:"valid_from"`
	ExpirationTime      string `json:"expiration_time"`
	Subject             string `json:"subject"`
}

type sanJSON struct {
	DNS       string `json:"dns,omitempty"`
	URI       string `json:"uri,omitempty"`
	IPAddress string `json:"ip_address,omitempty"`
}

func newCertsJSON(sets []CertificateSet, now time.Time) certsJSON {
	out := certsJSON{Certificates: make([]certificateJSON, 0, len(sets))}
	for _, s := range sets {
		c := certificateJSON{CACert: []certDetailsJSON{}, CertChain: []certDetailsJSON{},
			Listener: s.Listener, Cluster: s.Cluster, ServerName: s.ServerName}
		for _, d := range s.CACerts {
			c.CACert = append(c.CACert, newCertDetailsJSON(d, now))
		}
		for _, d := range s.CertChain {
			c.CertChain = append(c.CertChain, newCertDetailsJSON(d, now))
		}
		out.Certificates = append(out.Certificates, c)
	}
	return out
}

func newCertDetailsJSON(d CertificateDetails, now time.Time) certDetailsJSON {
	sans := []sanJSON{}
	for _, n := range d.DNSNames {
		sans = append(sans, sanJSON{DNS: n})
	}
	for _, u := range d.URIs {
		sans = append(sans, sanJSON{URI: u})
	}
	for _, ip := range d.IPs {
		sans = append(sans, sanJSON{IPAddress: ip})
	}
	end := d.ChainNotAfter
	if end.IsZero() {
		end = d.NotAfter
	}
	// Whole days, 0 once expired (Envoy's is unsigned).
	days := math.Max(0, math.Floor(end.Sub(now).Hours()/24))
	return certDetailsJSON{
		Path: d.Path, SerialNumber: d.Serial, SubjectAltNames: sans,
		DaysUntilExpiration: strconv.FormatFloat(days, 'f', 0, 64),
		ValidFrom:           d.NotBefore.UTC().Format(time.RFC3339),
		ExpirationTime:      d.NotAfter.UTC().Format(time.RFC3339),
		Subject:             d.Subject,
	}
}

func (a *admin) certs(w http.ResponseWriter, r *http.Request) {
	var sets []CertificateSet
	if ci, ok := a.info.(CertsInfo); ok {
		sets = ci.Certificates()
	}
	a.writeJSON(w, newCertsJSON(sets, a.clock()))
}
