// Package listener owns one process's socket set: opening fresh sockets,
// adopting inherited fds, exporting fds and closing what nobody claimed.
// A listener's identity is ident.Spec, built once (and normalised) by
// ident.New. It knows nothing of processes or of the handoff protocol.
package listener

import "github.com/mosnlite/mosnlite/listener/ident"

// Spec is a listener's identity (see package ident).
type Spec = ident.Spec

// Kind tells the proxy's own listeners from the service ports.
type Kind = ident.Kind

const (
	KindServer  = ident.KindServer
	KindService = ident.KindService
)

// Inherited is a listening socket received from the previous process.
type Inherited = ident.Socket
