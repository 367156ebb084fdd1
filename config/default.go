package config

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed default.json
var defaultJSON []byte

// DefaultJSON returns a copy of the built-in config used when no config file
// is given: one HTTP listener on 127.0.0.1:2046 answering every request
// itself, and the admin, pprof and metrics ports on 127.0.0.1:34901-34903.
func DefaultJSON() []byte {
	return append([]byte(nil), defaultJSON...)
}

// Default returns the built-in config, parsed, defaulted and validated. Its
// UDSDir is empty: see DefaultUDSDir.
func Default() (*Config, error) {
	c, err := Parse(defaultJSON)
	if err != nil {
		return nil, fmt.Errorf("config: embedded default.json: %w", err)
	}
	return c, nil
}

// DefaultUDSDir derives the uds_dir to use when the config leaves it empty,
// as MOSN does: "mosnlite-uds" beside the config file, so that a new process
// started with the same config file finds the running one. configPath must
// already be absolute (filepath.Abs) for the result to be; "" (the built-in
// config) gives a fixed directory under os.TempDir().
func DefaultUDSDir(configPath string) string {
	if configPath == "" {
		return filepath.Join(os.TempDir(), "mosnlite-default-uds")
	}
	return filepath.Join(filepath.Dir(configPath), "mosnlite-uds")
}
