// Package systemd speaks the two process-manager protocols mosnlite needs
// under systemd, written here rather than taken from a library:
//
//   - sd_notify(3): state changes sent as one datagram of KEY=VALUE lines to
//     the AF_UNIX socket named by NOTIFY_SOCKET (a path, or "@name" for the
//     abstract namespace): READY=1, RELOADING=1 with MONOTONIC_USEC=,
//     STOPPING=1, MAINPID=, STATUS=, WATCHDOG=1, and BARRIER=1, which waits
//     until the manager has processed every earlier message;
//   - sd_listen_fds(3): the sockets of socket activation, described by
//     LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES and passed from fd 3 on.
//
// Why our own: the protocol is a few dozen lines over golang.org/x/sys, which
// the project already uses. The Go library that exists (go-systemd's daemon
// package) reads and unsets the process environment itself, has no barrier
// (needed so that a MAINPID= change is processed before the old main process
// exits), no MONOTONIC_USEC=, and no bound on a send to a manager that does
// not read; here the environment, the clock and the timers are passed in, so
// the state machines are tested on fakes and a real test-owned socket.
//
// Nothing here reads os.Environ or holds package-level state: callers pass a
// getenv function and the process's pid.
package systemd
