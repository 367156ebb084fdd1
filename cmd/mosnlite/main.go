// Command mosnlite is a lightweight L4/L7 proxy whose restarts cost nothing.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `mosnlite — a TCP/HTTP proxy with zero-downtime upgrades

Usage:
  mosnlite start [-c FILE] [--daemon [--log-file FILE] [--wait-timeout 60s]]
      Run the proxy. With no -c, run the embedded default config
      (HTTP on 127.0.0.1:2046, admin :34901, pprof :34902, metrics :34903).
      Started while another mosnlite with the same uds_dir runs, it takes over
      that process's sockets and the old one drains and exits.
      --daemon starts the process in the background and returns only once it
      serves (after the old process acked the handoff): exit 0, or 1 with why.
      --log-file - hands our stdout and stderr to the new process.
  mosnlite validate -c FILE
      Check a config: exit 0, or 1 listing every problem.
  mosnlite await -c FILE [--timeout 60s]
      Wait until this container's mosnlite serves (a SidecarSet slot's
      postStart hook): exit 0, at once in a standby slot; 1 at the timeout.
  mosnlite version
      Print version, commit and Go version.
  mosnlite hot-restarter START_SCRIPT
      Envoy's hot-restarter wrapper (see README).
  mosnlite -c FILE [--restart-epoch N] [--base-id N] ... [--mode serve|validate|init_only]
      Envoy-compatible command line (hot restart by epochs; flags below).

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP upgrades to the same binary
path and config file; SIGUSR1 reopens log files.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "start":
		return cmdStart(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "await":
		return cmdAwait(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, buildInfo().String())
		return 0
	case "hot-restarter":
		return cmdHotRestarter(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+"\n")
		envoyUsage(stdout)
		return 0
	default:
		if strings.HasPrefix(args[0], "-") {
			return cmdEnvoy(args, stdout, stderr)
		}
		fmt.Fprintf(stderr, "mosnlite: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
