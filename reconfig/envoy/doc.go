// Package envoy is mosnlite's Envoy hot-restart compatibility layer: the
// restart epochs, base id, shared memory region and per-epoch domain sockets
// with which teams that run Envoy drive upgrades (the hot-restarter wrapper is
// in the hotrestarter sub-package). The semantics are Envoy's; the wire format
// is ours. It knows nothing of listeners, HTTP or the server: the caller hands
// in plain data and callbacks (ParentHooks) and gets files and samples back.
//
// # Flags
//
// Options carries Envoy's flags (parsed by cmd/mosnlite, with Envoy's names
// and defaults): --restart-epoch (0),
// --base-id (0), --use-dynamic-base-id, --base-id-path, --hot-restart-version,
// --disable-hot-restart, --drain-time-s (600), --parent-shutdown-time-s (900),
// --drain-strategy (gradual|immediate), --socket-path
// (@mosnlite_domain_socket), --socket-mode (600, octal) and
// --admin-address-path. Options.Validate refuses a dynamic base id with an
// epoch above 0 ("cannot use --restart-epoch=1 with --use-dynamic-base-id").
// --hot-restart-version prints Version (protocol version and region size,
// "2.48"), or "disabled" with --disable-hot-restart; admin
// /hot_restart_version returns the same string.
//
// # Base id and sockets
//
// Each process binds two unix stream sockets named
// {socket_path}_{parent|child}_{base_id*10 + epoch%3}: at most three epochs
// live at once, so ids wrap at 3. A socket path starting with "@" lives in
// Linux's abstract namespace: no file, and file modes do not apply, so anyone
// on the host (in the same network namespace) could connect. Every connection
// is therefore checked with SO_PEERCRED, both ways: a peer must run as our uid
// or as root. The parent also checks that the child connected from the
// expected child socket name. Other paths are files, chmod'ed to
// --socket-mode; a leftover file nobody listens on is replaced.
//
// The "parent" socket listens; the process's child (epoch+1) connects to it
// from its own "child" socket, bound to its name before connecting. A name
// already held by a live process (EADDRINUSE, or a file that accepts) is "in
// use": the error suggests --base-id. With --use-dynamic-base-id random base
// ids (below 2^28, as Envoy) are tried until both names bind; the chosen id
// is written (as decimal, atomically) to --base-id-path, as is a fixed one.
//
// # Shared memory
//
// /dev/shm/mosnlite_shared_memory_{base_id*10}, 48 bytes, mode 0600: magic,
// size, version, a state word (flags; pid owning INITIALIZING), the last
// epoch to attach and the creation time. The sockets are bound first, so a
// base id in use never touches the region. Epoch 0 removes any old region,
// creates a new one with INITIALIZING set. Epoch N>0 attaches, refuses a
// region of another size or version ("hot restart versions are not
// compatible"), and sets INITIALIZING atomically; if a live process holds it,
// Open fails with "previous process is still initializing" (ErrParentInitializing)
// having changed nothing, and the caller should exit 1. DrainParentListeners
// clears the flag once the child has taken over; Close clears it if the
// process failed before that, and a flag whose owner died is taken over.
// Who holds the flag is not told by a pid (across PID namespaces pids
// collide and read 0): its setter holds an exclusive flock on the region's
// file until it clears it, and the kernel drops that lock when the holder
// dies; the owner word is a random token of the setter's mapping.
//
// # The takeover (process N, parent N-1)
//
//  1. Open: bind sockets, open shared memory, connect to N-1's parent socket;
//     Serve(ParentHooks) on a goroutine answers N's own future child. Open
//     failing with ErrParentInitializing, ErrSocketInUse or ErrIncompatible
//     should end the process with exit code 1.
//  2. ShutdownParentAdmin: N-1 stops serving admin (ParentHooks.ShutdownAdmin)
//     and returns the first epoch's start time; N-1 then terminates its own
//     parent N-2 if it still lives, so at most three processes run.
//  3. PassListenSockets: N-1 sends the descriptors of its listening sockets
//     (its own, read while open: no duplicates) with their identity
//     (ident.Spec, checked on receipt); N-1 keeps accepting meanwhile.
//  4. AttachStats / SyncParentStats: counters and histograms continue (the
//     parent's growth is added; a parent histogram state that is not a
//     consistent histogram is refused, named once), gauges include the
//     parent's while it lives (StatMerger.Overlay).
//  5. Once N serves on every listener: DrainParentListeners, with one end of
//     a new socket pair, the drain stream, and the listeners N takes
//     connections for. N-1 stops accepting, moves those connections to N on
//     the stream (ParentHooks.Drain gets its reconfig.Successor; N reads it
//     with the returned reconfig.Follower) and drains the rest over
//     --drain-time-s with --drain-strategy (DrainSchedule); INITIALIZING is
//     cleared.
//  6. TerminateParentAfter(--parent-shutdown-time-s): a last stats sync, then
//     N-1 closes its epoch sockets and shuts down (ParentHooks.Terminate).
//
// A process shutting down on its own should TerminateParent too, as Envoy
// does. A failed or timed-out request counts as a lost parent (ParentGone is
// closed); during the takeover the caller should treat it as fatal. Every request has a deadline (its context, else 10s); a broken
// connection means the parent is gone. Without a parent (epoch 0, or after
// TerminateParent) the child calls are no-ops returning zero values.
//
// Stats: server.hot_restart_generation is meant to be a gauge each process
// sets to 1; it is "retained", so the overlay reads 1, 2, 3 across epochs even
// after parents exit. server.live and other per-process gauges are not
// imported (it reads 1).
//
// # Wire format
//
// Each message is one frame of the codec shared with the MOSN-style handoff
// (package wire): "MLH2" (the magic carries ProtocolVersion) | type u8 |
// flags u8 | length u32 | JSON payload, big-endian. Descriptors ride on the
// frame's first bytes, 253 per sendmsg, so any number of listening sockets
// passes. Each type has its own payload limit, checked from the header
// before anything is allocated: 4 KiB for requests, empty replies and error
// replies (whose message is bounded to 1 KiB, sent or logged), 64 KiB for a
// drain request, 16 MiB for the socket list and each part of a stats reply
// (a child that asks for histograms takes the reply in parts, consecutive
// runs of series, "more" on all but the last, read back to back). A peer with
// another "MLH" magic is ErrIncompatible; any other malformed frame is
// ErrGarbled, and every received descriptor is closed on every error path.
// Requests and replies alternate on one connection:
//
//	1 shutdown_admin       → 2 {original_start_unix_nano}
//	3 pass_listen_sockets  → 4 {sockets: [{name, kind, network, address}]} + fds in order
//	5 stats {histograms: true}
//	                       → 6 {samples: [sample.Sample], histograms: [histsample.Histogram], more: bool} …
//	5 stats (no payload)   → 6 {samples: [sample.Sample]} (an older child: one part, no histograms)
//	7 drain_listeners {migration: [{listener, kind}]} + 1 fd
//	                       → 8 {}
//	9 terminate            → 10 {} (then the parent closes its sockets and shuts down)
//	any unknown request    → 15 {message}
//
// The descriptor of drain_listeners is the child's end of a socket pair: the
// drain stream. On it the parent moves its connections to the child exactly
// as the MOSN-style handoff does after its ack (connection offers, commits,
// results and a final bye, see package reconfig), for the listeners the
// request names; the drain strategy then governs only what could not move.
//
// # Parent death
//
// SetParentDeathSignal sets PR_SET_PDEATHSIG to SIGTERM, as Envoy does, so a
// process dies with its launcher. Linux ties it to the calling thread: call it
// on the main thread (see its doc).
package envoy
