package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/mosnlite/mosnlite/service/stats"
)

// HandshakeError is a failed handshake and why, as the failure counters
// count it.
type HandshakeError struct {
	Reason string // one of stats.TLSReason*
	Err    error
}

func (e *HandshakeError) Error() string { return "tls handshake (" + e.Reason + "): " + e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// Alerts by the text crypto/tls gives them, where the alert says which
// reason it is (others are stats.TLSReasonAlert).
var alertReasons = map[string]string{
	"tls: protocol version not supported": stats.TLSReasonVersion,
	"tls: handshake failure":              stats.TLSReasonCipher, // what a peer sends when nothing is in common
	"tls: insufficient security level":    stats.TLSReasonCipher,
	"tls: no application protocol":        stats.TLSReasonALPN,
}

// Reason classifies a handshake error; upstream says which side we were
// (a certificate that does not verify is the client's downstream, the
// server's upstream).
func Reason(err error, upstream bool) string {
	var (
		ne  net.Error
		rhe tls.RecordHeaderError
		cve *tls.CertificateVerificationError
		op  *net.OpError
	)
	badCert := stats.TLSReasonBadCert
	if upstream {
		badCert = stats.TLSReasonBadServer
	}
	switch {
	case err == nil:
		return ""
	case errors.As(err, &op) && op.Op == "remote error":
		if r, ok := alertReasons[op.Err.Error()]; ok {
			return r
		}
		return stats.TLSReasonAlert
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return stats.TLSReasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, context.Canceled):
		return stats.TLSReasonClosed
	case errors.As(err, &rhe):
		return stats.TLSReasonNotTLS
	case errors.As(err, &cve), isX509(err):
		return badCert
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return stats.TLSReasonNoCert
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "unsupported protocol version"),
		strings.Contains(msg, "protocol version"):
		return stats.TLSReasonVersion
	case strings.Contains(msg, "cipher suite"), strings.Contains(msg, "curve"), strings.Contains(msg, "key share"),
		strings.Contains(msg, "signature algorithm"):
		return stats.TLSReasonCipher
	case strings.Contains(msg, "application protocol"), strings.Contains(msg, "ALPN"):
		return stats.TLSReasonALPN
	case strings.Contains(msg, "SSLv2"), strings.Contains(msg, "does not look like a TLS handshake"):
		return stats.TLSReasonNotTLS
	}
	return stats.TLSReasonOther
}

func isX509(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		ci x509.CertificateInvalidError
		he x509.HostnameError
	)
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he)
}
