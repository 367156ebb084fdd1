package envoy

import "strconv"

// ProtocolVersion numbers both the wire format of the epoch sockets and the
// layout of the shared memory region. Bump it on any incompatible change to
// either: processes of different versions refuse to hot restart into each other.
const ProtocolVersion = 2

// Version is the hot-restart compatibility string, "<protocol>.<region size>",
// that --hot-restart-version prints and admin /hot_restart_version returns;
// "disabled" when hot restart is disabled. Two binaries can hot restart into
// each other exactly when their strings are equal.
func Version(disabled bool) string {
	if disabled {
		return "disabled"
	}
	return strconv.Itoa(ProtocolVersion) + "." + strconv.Itoa(RegionSize)
}
