// Package h2 is mosnlite's HTTP/2 connection engine: one connection's
// frames, streams and flow control, for either end — a server connection
// that hands each new stream to a handler, or a client connection that
// opens streams to an upstream. It knows nothing of routing or proxying:
// a stream is its header fields, a body read and written as bytes, and
// trailers. The proxy (package proxy) decides what a stream means.
//
// Framing and HPACK are golang.org/x/net/http2's (Framer, hpack): the wire
// format is theirs, the state machines are ours, so that the proxy sees
// every stream as it arrives (its routing, its request record, its limits)
// and a drain does what an upgrade needs (see Conn.Shutdown).
//
// # Concurrency
//
// One goroutine reads the connection's frames (Serve for a server, started
// by NewClient for a client). Writes come from any goroutine — the reader
// (SETTINGS and PING acknowledgements, WINDOW_UPDATE, RST_STREAM) and each
// stream's user — and go through one buffered writer under a mutex; the
// last writer to leave flushes, so writes that queue up behind each other go
// out together. A write blocked longer than Config.WriteTimeout fails the
// connection.
//
// # Flow control
//
// Each stream's receive buffer is bounded by the window we advertise for it
// (Config.StreamWindow), and the connection's by Config.ConnWindow: a peer
// that sends more is a flow-control error. Window is given back as the
// stream's user reads (a WINDOW_UPDATE once half of it is consumed), so a
// slow reader slows its sender instead of growing a buffer. Sending waits
// for the peer's windows, at most the stream's write deadline.
//
// # Abuse
//
// Header lists larger than Config.MaxHeaderListSize are cut (the stream is
// marked, and the proxy answers 431); a stream over the concurrency limit,
// counting handlers that still run for streams the client reset, is refused
// (REFUSED_STREAM), and a client refused or sending empty DATA frames in
// bulk is told to calm down (GOAWAY ENHANCE_YOUR_CALM) and closed.
// Acknowledgements are written synchronously by the reader: a peer that
// does not read what it asks for stops being read.
package h2
