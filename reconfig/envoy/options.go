package envoy

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Drain strategies accepted by --drain-strategy.
const (
	DrainGradual   = "gradual"
	DrainImmediate = "immediate"
)

// Defaults, as Envoy has them (the socket path is ours).
const (
	DefaultDrainTime          = 600 * time.Second
	DefaultParentShutdownTime = 900 * time.Second
	DefaultSocketPath         = "@mosnlite_domain_socket"
	DefaultSocketMode         = os.FileMode(0o600)
	// MaxBaseID keeps base_id*10 + 2 within 32 bits, as Envoy's uint32 does.
	MaxBaseID = (math.MaxUint32 - 2) / 10
)

// Options are the hot-restart command line options, with Envoy's names and
// meaning. cmd/mosnlite parses them from Envoy's flags.
type Options struct {
	RestartEpoch       int           // --restart-epoch
	BaseID             int           // --base-id (unscaled: names use BaseID*10)
	UseDynamicBaseID   bool          // --use-dynamic-base-id
	BaseIDPath         string        // --base-id-path: the chosen base id is written here
	HotRestartVersion  bool          // --hot-restart-version: print Version and exit (cmd's job)
	DisableHotRestart  bool          // --disable-hot-restart
	DrainTime          time.Duration // --drain-time-s
	ParentShutdownTime time.Duration // --parent-shutdown-time-s
	DrainStrategy      string        // --drain-strategy: gradual or immediate
	SocketPath         string        // --socket-path: "@" prefix means the abstract namespace
	SocketMode         os.FileMode   // --socket-mode: octal; ignored for abstract sockets
	AdminAddressPath   string        // --admin-address-path: the admin address is written here
}

// DefaultOptions returns Envoy's defaults.
func DefaultOptions() Options {
	return Options{
		DrainTime:          DefaultDrainTime,
		ParentShutdownTime: DefaultParentShutdownTime,
		DrainStrategy:      DrainGradual,
		SocketPath:         DefaultSocketPath,
		SocketMode:         DefaultSocketMode,
	}
}

// Validate checks the options on their own and against each other.
func (o Options) Validate() error {
	var errs []error
	if o.RestartEpoch < 0 {
		errs = append(errs, fmt.Errorf("--restart-epoch must not be negative, got %d", o.RestartEpoch))
	}
	if o.BaseID < 0 || o.BaseID > MaxBaseID {
		errs = append(errs, fmt.Errorf("--base-id must be in [0, %d], got %d", MaxBaseID, o.BaseID))
	}
	if o.UseDynamicBaseID && o.RestartEpoch > 0 {
		errs = append(errs, fmt.Errorf("cannot use --restart-epoch=%d with --use-dynamic-base-id", o.RestartEpoch))
	}
	if o.DrainStrategy != DrainGradual && o.DrainStrategy != DrainImmediate {
		errs = append(errs, fmt.Errorf("unknown drain-strategy %q (want %s or %s)", o.DrainStrategy, DrainGradual, DrainImmediate))
	}
	if o.DrainTime < 0 {
		errs = append(errs, fmt.Errorf("--drain-time-s must not be negative, got %v", o.DrainTime))
	}
	if o.ParentShutdownTime < 0 {
		errs = append(errs, fmt.Errorf("--parent-shutdown-time-s must not be negative, got %v", o.ParentShutdownTime))
	}
	if o.SocketMode&^os.ModePerm != 0 {
		errs = append(errs, fmt.Errorf("invalid socket-mode %o", o.SocketMode))
	}
	switch {
	case o.SocketPath == "" || o.SocketPath == "@":
		errs = append(errs, errors.New("--socket-path must not be empty"))
	default:
		// The longest name this process may use: the "parent" role and the largest id.
		longest := SocketName(o.SocketPath, RoleParent, MaxBaseID, 2)
		if len(longest) > maxSocketName {
			errs = append(errs, fmt.Errorf("--socket-path %q is too long: socket names must fit in %d bytes", o.SocketPath, maxSocketName))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("envoy: options: %w", errors.Join(errs...))
	}
	return nil
}

// ParseSocketMode parses a file mode written in octal, as --socket-mode takes it ("600", "0644").
func ParseSocketMode(s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	if err != nil || v&^uint64(os.ModePerm) != 0 {
		return 0, fmt.Errorf("envoy: invalid socket-mode %q: want octal permission bits such as 600", s)
	}
	return os.FileMode(v), nil
}

// WriteAdminAddress writes the admin listener's address to --admin-address-path
// (atomically, so a reader polling the file never sees half of it); a no-op
// when the option is empty.
func (o Options) WriteAdminAddress(addr string) error {
	if o.AdminAddressPath == "" {
		return nil
	}
	if err := writeFileAtomic(o.AdminAddressPath, []byte(addr)); err != nil {
		return fmt.Errorf("envoy: write --admin-address-path: %w", err)
	}
	return nil
}
