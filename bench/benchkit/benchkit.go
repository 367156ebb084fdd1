// Package benchkit is what the benchmark commands share: finding or building
// the mosnlite binary they measure.
package benchkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MosnliteBinary returns given if it is set and exists; otherwise it builds
// ./cmd/mosnlite of the enclosing module into dir and returns that path.
func MosnliteBinary(ctx context.Context, given, dir string, logf func(string, ...any)) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("mosnlite binary: %w", err)
		}
		return given, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	logf("building mosnlite ...")
	out := filepath.Join(dir, "mosnlite")
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", out, "./cmd/mosnlite")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build mosnlite: %w\n%s", err, b)
	}
	return out, nil
}

// moduleRoot is the directory of the go.mod enclosing the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the mosnlite module: run from the repository (or pass -mosnlite BINARY)")
	}
	return filepath.Dir(gomod), nil
}
