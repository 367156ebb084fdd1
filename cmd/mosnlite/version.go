package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/mosnlite/mosnlite/server"
)

// mosnliteVersion is the release this source tree builds.
const mosnliteVersion = "0.1.0"

// buildInfo reads the commit that go build stamped into the binary.
func buildInfo() versionInfo {
	v := versionInfo{BuildInfo: server.BuildInfo{Version: mosnliteVersion, Commit: "unknown", GoVersion: runtime.Version()}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.dirty = s.Value == "true"
			}
		}
	}
	return v
}

type versionInfo struct {
	server.BuildInfo
	dirty bool
}

func (v versionInfo) String() string {
	c := v.Commit
	if v.dirty {
		c += "-dirty"
	}
	return fmt.Sprintf("mosnlite %s (commit %s, %s)", v.Version, c, v.GoVersion)
}
