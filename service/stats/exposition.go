package stats

import (
	"fmt"
	"time"
)

// Naming is how a registry's series are named where Prometheus reads them
// (/metrics, admin /stats/prometheus).
type Naming string

const (
	// NamingMosnlite (the default): "mosnlite_" and the dotted name with
	// every "." turned into "_", labels as registered.
	NamingMosnlite Naming = "mosnlite"
	// NamingEnvoy: the names and tags of Envoy's Prometheus output for every
	// statistic Envoy also has (see EnvoyNames); mosnlite's names for the rest.
	NamingEnvoy Naming = "envoy"
)

// ParseNaming reads a configured naming; "" is NamingMosnlite.
func ParseNaming(s string) (Naming, error) {
	switch Naming(s) {
	case "", NamingMosnlite:
		return NamingMosnlite, nil
	case NamingEnvoy:
		return NamingEnvoy, nil
	}
	return "", fmt.Errorf("stats: unknown naming %q (want %q or %q)", s, NamingMosnlite, NamingEnvoy)
}

// Exposition shapes how the registry is exposed to Prometheus. The zero value
// is mosnlite's names, classic histograms only.
type Exposition struct {
	Naming Naming
	// NativeHistograms adds native (sparse exponential) buckets to every
	// histogram beside its classic ones. Only the protobuf exposition carries
	// them; a text scrape sees the classic buckets either way. Not available
	// with NamingEnvoy, whose histograms are in milliseconds.
	NativeHistograms bool
	// ListenerAddress returns a proxy listener's network and bound address by
	// name, for Envoy's envoy_listener_address tag; nil or !ok falls back to
	// the listener's name.
	ListenerAddress func(name string) (network, address string, ok bool)
	// Now is the clock of Envoy's envoy_server_uptime; nil means time.Now.
	Now func() time.Time
}

// SetExposition sets how the registry is exposed. It refuses an unknown
// naming and native histograms with Envoy's naming.
func (r *Registry) SetExposition(e Exposition) error {
	n, err := ParseNaming(string(e.Naming))
	if err != nil {
		return err
	}
	e.Naming = n
	if e.Naming == NamingEnvoy && e.NativeHistograms {
		return fmt.Errorf("stats: native histograms are not available with %q naming (its histograms are in milliseconds)", NamingEnvoy)
	}
	r.expo.Store(&e)
	return nil
}

// Exposition returns how the registry is exposed.
func (r *Registry) Exposition() Exposition {
	if e := r.expo.Load(); e != nil {
		return *e
	}
	return Exposition{Naming: NamingMosnlite}
}

func (e Exposition) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
