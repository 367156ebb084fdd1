package http1

// FieldKind names the header fields a proxy treats specially.
type FieldKind uint8

const (
	KindOther FieldKind = iota
	KindHost
	KindContentLength
	KindTransferEncoding
	KindConnection
	KindExpect
	KindUpgrade
	KindKeepAlive
	KindProxyConnection
	KindTE
	KindTrailer
	KindProxyAuthenticate
	KindProxyAuthorization
	KindXForwardedFor
	KindXForwardedProto
)

// Unexported aliases keep the parser's switch statements short.
const (
	kindHost             = KindHost
	kindContentLength    = KindContentLength
	kindTransferEncoding = KindTransferEncoding
	kindConnection       = KindConnection
	kindExpect           = KindExpect
	kindUpgrade          = KindUpgrade
)

// Kind classifies a field name, ignoring case.
func Kind(name []byte) FieldKind { return fieldKind(name) }

func fieldKind(name []byte) FieldKind {
	// By length first: most names are rejected on it alone.
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return KindTE
		}
	case 4:
		if equalFold(name, "host") {
			return KindHost
		}
	case 6:
		if equalFold(name, "expect") {
			return KindExpect
		}
	case 7:
		switch {
		case equalFold(name, "upgrade"):
			return KindUpgrade
		case equalFold(name, "trailer"):
			return KindTrailer
		}
	case 10:
		switch {
		case equalFold(name, "connection"):
			return KindConnection
		case equalFold(name, "keep-alive"):
			return KindKeepAlive
		}
	case 14:
		if equalFold(name, "content-length") {
			return KindContentLength
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return KindXForwardedFor
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return KindProxyConnection
		}
	case 17:
		switch {
		case equalFold(name, "transfer-encoding"):
			return KindTransferEncoding
		case equalFold(name, "x-forwarded-proto"):
			return KindXForwardedProto
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return KindProxyAuthenticate
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return KindProxyAuthorization
		}
	}
	return KindOther
}

// HopByHop reports whether a field of this kind describes one connection,
// not the message, and so is never forwarded (RFC 9110 §7.6.1, and the
// legacy Keep-Alive, Proxy-Connection and proxy authentication fields).
// Trailer goes too: the proxy frames the body anew. Fields that the
// Connection header names are hop-by-hop as well; see ConnectionOption.
func (k FieldKind) HopByHop() bool {
	switch k {
	case KindConnection, KindKeepAlive, KindProxyConnection, KindTE, KindTrailer,
		KindTransferEncoding, KindUpgrade, KindProxyAuthenticate, KindProxyAuthorization:
		return true
	}
	return false
}
