package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// benchCert is the certificate both proxies present on their HTTPS
// listener: ECDSA P-256, self-signed for bench.test and 127.0.0.1, made at
// each run (nothing that expires is kept).
type benchCert struct {
	certPath, keyPath string
	pool              *x509.CertPool
}

// benchServerName is the name the bench's HTTPS clients send and verify.
const benchServerName = "bench.test"

func makeBenchCert(dir string) (benchCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return benchCert{}, fmt.Errorf("tls: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: benchServerName},
		DNSNames:              []string{benchServerName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return benchCert{}, fmt.Errorf("tls: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return benchCert{}, fmt.Errorf("tls: certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return benchCert{}, fmt.Errorf("tls: key: %w", err)
	}
	c := benchCert{certPath: filepath.Join(dir, "bench.crt"), keyPath: filepath.Join(dir, "bench.key"), pool: x509.NewCertPool()}
	c.pool.AddCert(leaf)
	if err := os.WriteFile(c.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return benchCert{}, fmt.Errorf("tls: %w", err)
	}
	if err := os.WriteFile(c.keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return benchCert{}, fmt.Errorf("tls: %w", err)
	}
	return c, nil
}

// clientConfig verifies the bench certificate and keeps no session cache:
// every new connection is a full handshake. Its one key exchange group,
// X25519, is one both proxies have (Go's default would have mosnlite do
// the costlier hybrid X25519MLKEM768, which nginx's OpenSSL lacks).
func (c benchCert) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, ServerName: benchServerName, NextProtos: []string{"http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519}}
}

// measureHTTPS runs the built-in generator over TLS (a warm-up, then
// -duration): keep-alive, or a new connection — a full handshake — per
// request with closeEach, whose rate is then handshakes per second.
func measureHTTPS(ctx context.Context, o options, cert benchCert, t target, closeEach bool) (httpResult, error) {
	spec := loadSpec{addr: t.httpsAddr, conns: o.connections, d: o.warmup, wantBody: o.bodySize, closeEach: closeEach, tls: cert.clientConfig()}
	if o.warmup > 0 {
		if w := goHTTPLoad(ctx, spec); w.Requests == 0 {
			return httpResult{}, fmt.Errorf("%s: no successful HTTPS request during warm-up (%d errors)", t.name, w.Errors)
		}
	}
	spec.d = o.duration
	r := goHTTPLoad(ctx, spec)
	if r.Requests == 0 {
		return r, errors.New(t.name + ": no successful HTTPS request")
	}
	return r, nil
}
