package main

import (
	"fmt"
	"io"
)

// cmdEnvoy runs mosnlite with Envoy's command line (hot restart by epochs).
func cmdEnvoy(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "mosnlite: Envoy-compatible command line is not wired yet")
	return 2
}

// cmdHotRestarter runs Envoy's hot-restarter wrapper semantics.
func cmdHotRestarter(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "mosnlite: hot-restarter is not wired yet")
	return 2
}
