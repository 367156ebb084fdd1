// Package reconfig hands a running mosnlite's listening sockets to a
// starting one over unix stream sockets. It knows nothing of HTTP or
// proxying: listeners are named fds (ident.Spec), counters are
// sample.Sample. The frame codec, the peer check and the liveness check are
// package wire's, shared with the Envoy-style layer (reconfig/envoy), which
// also uses this package's drain stream (Successor, Follower).
//
// # Files in uds_dir
//
// The directory is created 0700 (an existing one of ours is narrowed to
// 0700; one owned by another uid is refused). It holds:
//
//   - reconfig.sock: the running process accepts upgrade requests here.
//   - listen.sock: exists only while an upgrading process waits for the
//     manifest; removed as soon as the old process has connected.
//   - upgrade.lock: flock(LOCK_EX|LOCK_NB) held by a starting process from
//     Begin until TakeOver or Fail. A second starter fails at once with
//     ErrUpgradeInProgress; the kernel drops the lock of a dead process.
//
// Sockets are bound to a temporary name, chmod 0600, then renamed into
// place, so they are never reachable with a wider mode and a new process
// replaces reconfig.sock atomically. No listener unlinks its path on close.
// Every connection's peer is checked with SO_PEERCRED: a uid other than
// ours is refused (unless we are root) and logged.
//
// # The handoff
//
//	new                                  old (Server on reconfig.sock)
//	take upgrade.lock
//	dial reconfig.sock  ───────────────▶ accept, check peer uid
//	                    ◀─── 'U' ─────── (or 'B' if busy → ErrUpgradeInProgress;
//	                                      'R' + reason if OnRequest refuses → ErrUpgradeRefused)
//	bind listen.sock
//	                    ── 'L'+token ──▶ (one write: 32 random bytes, see proof.go)
//	accept listen.sock  ◀─── dial ────── check peer uid
//	                    ──── hello ────▶ the token's first half: the acceptor is the asker
//	                    ◀─── manifest ── every listener fd (SCM_RIGHTS), the token's second
//	check the proof                      half: the dialer is the one asked
//	open listeners, serve
//	                    ──── ack ──────▶ stop accepting on reconfig.sock, OnAck: drain
//	TakeOver: rename reconfig.sock,      (or nack/EOF/timeout: log, OnFail, keep serving)
//	release lock
//	Follow              ◀─── counters ── increments while draining (repeated)
//	                    ◀─── migrated ── the connection migration is over (optional)
//	                    ◀─── bye ─────── drained
//	                    ──── done ─────▶ (the new one no longer shows the old as draining)
//	                    ──── release ──▶ only when the new one stops or is upgraded itself
//	                    (EOF either way when the old one exits after its watch)
//
// No dial means a fresh start: no file (ENOENT) or a stale file nobody
// accepts on (ECONNREFUSED; the file is removed, which is safe under the
// lock). Any other dial error is an error, never a fresh start.
//
// An old process that has run out of descriptors still takes the request:
// it keeps a few spare descriptors, released one at a time for the accept on
// reconfig.sock and the dial to listen.sock (again when a client listener's
// accept took the slot first), and refilled after the handoff; the manifest
// carries the listeners' own descriptors (no duplicates). A failing accept
// is logged at most every 10 s, with the number of failures left unlogged.
//
// Every step has a deadline: the new side takes it from Begin's context,
// the old side from ServerConfig.HandoffTimeout, counted from the request.
// The manifest carries how long the old side still waits (AckTimeout; and
// AckDeadline, its wall-clock form for an earlier version), a hint: the
// new side, counting it from the manifest's arrival on its own clock, does
// not ack after it. Safety rests on no
// clock. When the old side's wait for the ack ends — its deadline and a
// further second, a stall past them (SIGSTOP, starvation), or Close — it
// settles the handoff: it shuts its reading first (from then on the new
// side's ack write fails with EPIPE; the kernel queues a write or refuses
// it atomically with that shut), then reads what was sent before. An ack
// there was sent in time and the handoff goes on; otherwise it sends an
// abort frame (type 9, a reason) and serves on. A new side whose ack write
// failed reads, bounded, what follows: an abort means the old process
// serves on (it gives up); the end of the stream without one means it is
// gone (it carries on alone, PredecessorGone). So an ack sent in time is
// never lost, and the new side counts itself the owner exactly when the
// old side hands over. A Close during a handoff interrupts it (never closes
// it): one acked hands over, any other is called off. The old side
// keeps the reconfig connection open until the handoff ends, so the new
// side notices at once when the old process dies before connecting to
// listen.sock; an old process that dies later shows as EOF on listen.sock.
//
// The token, not the peers' pids, ties listen.sock to reconfig.sock: across
// PID namespaces (two containers of a pod) SO_PEERCRED reports every peer
// as pid 0, so that comparing pids proves nothing. A peer of an earlier
// version sends 'L' alone (the old side then compares pids), or skips the
// optional hello and sends no proof (the new side then compares pids).
// Logs name a peer seen as pid 0 by the pid it reports itself (hello, ack,
// manifest), marked "in another PID namespace".
//
// Until the ack the old process has stopped nothing: any failure (nack,
// EOF, timeout, a garbled frame) is logged with both pids and it carries on,
// ready for the next upgrade. A failing new process never touches
// reconfig.sock. After TakeOver the new Server answers 'B' until the old
// process's bye: a further upgrade waits for the previous drain to end, so
// that no drain's counters are lost.
//
// If the old process dies after sending its manifest and before reading the
// ack (Ack fails and PredecessorGone: the handoff connection was closed by
// the old side, which a pid could not tell across PID namespaces), Orphan
// makes the new process an ordinary running one: TakeOver binds reconfig.sock and frees the lock, so
// it can be upgraded at once.
//
// # The watch
//
// A new process says in its ack ("watch": true) that it keeps the handoff
// connection open after the bye until it sends release. The old process may
// then watch it after the ack (upgrade_watch_period): the connection
// breaking without a release means the new process died, and the old one,
// which kept its listening sockets, serves again and takes reconfig.sock
// back (Reclaim, under the upgrade lock). The new process sends release
// before it hands over to a successor of its own (when that successor's
// request arrives) and when it stops for good, so that no earlier
// generation ever comes back. An old process talking to a new one without
// "watch" does not watch; one without done support is waited for at most
// 2 s after the bye.
//
// # Frames
//
// On listen.sock every message is a frame:
//
//	magic "MLR1" (4) | type (1) | flags (1) | payload length, big-endian (4) | JSON payload
//
// Each type has its own limits, checked from the header before anything is
// read or allocated; a frame over them is an error naming the type and both
// sizes, and a peer's string is never logged whole:
//
//	type                   payload   fds
//	1 manifest             16 MiB    one per entry (at most 65536); refused before sending when larger
//	                                 (ErrManifestTooLarge: the sender sends it without its histograms)
//	2 ack                   1 MiB    0
//	3 nack                  4 KiB    0   (reason cut to 1 KiB when sent, and when logged)
//	4 counters             16 MiB    0   a push over it goes in parts ("more": true on all but the last)
//	5 bye                   1 KiB    0
//	6 done                  1 KiB    0   new → old: bye handled
//	7 release               1 KiB    0   new → old: stop watching me
//	8 hello                 1 KiB    0   new → old, first on listen.sock: {"pid", "proof"}
//	9 abort                 4 KiB    0   old → new, in place of taking the ack: {"pid", "reason"}
//	16 connection offer    12 MiB    1 (http) or 2 (tcp)
//	17 migration commit     2 MiB    0
//	18 migration result    16 MiB    0
//	19 migration done       1 KiB    0   old → new: {"moved","failed","duration"}
//
// Flag bit 0 ("optional") lets a reader skip a type it does not know: its
// payload is read and discarded in 32 KiB chunks, never held whole, its fds
// closed; an unknown type without it is an error, and no frame may exceed
// 16 MiB. Types 6-9 and 16-19 are flagged optional: an older peer skips them. New fields in an existing
// payload are ignored by older readers. ProtocolVersion in the manifest
// changes only for an incompatible change and must match exactly. Every
// manifest entry is checked (ident.Spec.Valid: bounded name and address, a
// known kind and network, an address in normal form).
//
// A frame's fds ride on its first bytes, at most 253 (SCM_MAX_FD) per
// sendmsg, one byte per batch. The reader reads exactly one frame's bytes,
// always with room for a full batch of control data, so fds never attach to
// the wrong frame; MSG_CTRUNC, an fd count different from the manifest's
// entry count, bad magic, an oversize length or bad JSON are errors naming
// what is wrong, and every fd received is closed on every error path.
// Received fds are close-on-exec.
//
// # Counters and histograms
//
// The manifest carries the old process's counter values and histogram
// states (histsample.Histogram: classic and native buckets, sum, count) at
// export; the new one adds them to its registry. It also carries Env:
// names and values a process manager gave the lineage that a successor
// started outside it lacks (systemd's WATCHDOG_USEC), at most MaxEnv, each
// bounded, and the lineage's TLS session ticket keys ("session_ticket_keys":
// [{"key": base64 of 32 bytes, "created": RFC 3339}], at most 16; secret,
// on this socket only, never logged), so that clients resume their TLS
// sessions across the upgrade. After the ack the old one
// sends, with Successor.SendCounters, what grew since its last send
// ({"counters": [...], "histograms": [deltas], "more": bool}), and Bye when
// drained; Follow hands each push to the caller (FollowHooks.Counts). A push
// too large for a frame is split into parts, consecutive runs of its series
// (wire.Split), "more" set on all but the last; each part is applied as it
// comes, and only the last completes the push (the first complete one after
// the ack tells the new process the old one has sent everything it showed).
// An older new process ignores "histograms" and "more". The receiver
// validates every histogram state (the registry refuses, naming them, those
// that are not consistent histograms); reconfig carries them as they are.
//
// Once the connections of the listeners that migrate have all moved or
// finished, the old process sends "migration done" (optional): the new one
// then knows how many it took (FollowHooks.Migrated).
//
// # Live connection migration
//
// After the ack the old process may move established connections to the
// new one on the same connection, in batches, two-phase:
//
//	new (Follow, ConnHandler)            old (Successor.Migrate)
//	ack {"pid", "migration": [{"listener","kind"}…]}
//	                    ◀─── counters ── (first, as always)
//	Hold: adopt, do not serve  ◀── offer ── one per connection, its sockets as SCM_RIGHTS
//	                    ◀─── offer ───── …
//	                    ◀─── commit ──── {"batch","ids","timeout","deadline"}
//	                    ──── result ───▶ {"batch","accepted":[ids],"refused":[{"id","reason"}]}
//	Start the accepted ones               close its copies of the accepted ones;
//	(pending bytes written first)         resume the refused ones
//
// The ack's "migration" list names the listeners (and their kind, "tcp",
// "http" or "http_tunnel": an HTTP listener's upgraded connections) the new
// process takes connections for; the old process offers only those (a
// connection of a kind not listed stays with it). A new process that sends no list (an older version, or
// AcceptConnections never called) gets no offers, and an old process that
// ignores the list drains as before: both directions stay compatible.
//
// An offer's payload:
//
//	{"id": 7, "listener": "web", "kind": "http"|"tcp"|"http_tunnel",
//	 "started_at": "RFC 3339", "timeout": ns, "deadline": "RFC 3339",
//	 "to_upstream": base64, "to_downstream": base64,   // tcp, http_tunnel: read, not yet written
//	 "buffered": base64, "requests": 12}               // http: read, not yet parsed
//
// with its fds: tcp and http_tunnel [downstream, upstream], http
// [downstream]. A receiver
// refuses (with the reason, in the result) an offer whose JSON or fields
// are bad, whose fd count does not match its kind, with more than 4 MiB in
// any buffer, for a listener it does not serve, or past its deadline; the
// fds of a refused or unreadable offer are closed at once. An unreadable
// offer has no id; the commit's list shows it missing ("offer not
// received"). Ids are non-zero and unique; a result that names an id twice
// (or both accepted and refused) is garbled.
//
// Safety rests on one rule: the new process serves a connection only after
// it has written a result accepting it, and the old process resumes a
// connection only once it knows the new one will not serve it. Each side
// times a batch on its own clock: "timeout" runs, on the new side, from the
// batch's first offer reaching it (late, it refuses the whole batch); the
// wall-clock "deadline" is for a new process of an earlier version. The
// old side waits for the result past its own time limit (a second, then
// StreamConfig.SettleTimeout): the stream is in order, so
//
//   - result read: accepted ones are the new process's (the old closes its
//     copies, a plain close: no shutdown, the socket lives on there);
//     refused ones, and ids the result does not name, stay the old's;
//   - the new process's end closed (EOF or a reset) before a result, or the
//     batch never went out whole (a failed write: the old side shuts its
//     write side, so the new side reads a truncated frame and ends its
//     follow): nothing was accepted, the old process resumes the whole batch;
//   - no answer within the settle bound (a new process stopped or starved)
//     or a garbled one: the batch is unsettled (ErrMigrationUnsettled); the
//     old process resumes none of it and closes its copies — the new one
//     serves what it accepted, the rest closes.
//
// After a failed batch Migrate fails at once for every later one. A failed
// write of ours, a timeout or garbage never reads as the new process's
// death (Successor.Gone): only its end closed does.
//
// A connection is thus never lost: until the result it is the old
// process's, and an answer never arrives after the old one gave up. Only
// one batch is in flight at a time. Received fds are close-on-exec and
// closed on every error path; the new side's ConnHandler sees them only
// for the length of Hold.
package reconfig
