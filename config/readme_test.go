package config

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryField: the README's config reference names every
// field of the schema (each MOSN field with its class, and mosnlite's own),
// so that a field added here without its documentation fails.
func TestREADMEDocumentsEveryField(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Configuration")
	end := strings.Index(readme, "## Data plane")
	if start < 0 || end < start {
		t.Fatal("README has no Configuration section before Data plane")
	}
	section := readme[start:end]
	names := map[string]bool{}
	seen := map[reflect.Type]bool{}
	for _, root := range []reflect.Type{reflect.TypeFor[Config](), reflect.TypeFor[HTTPProxyConfig](),
		reflect.TypeFor[TCPProxyConfig](), reflect.TypeFor[PrometheusSink](), reflect.TypeFor[SocketAddress]()} {
		collectFieldNames(root, names, seen) // the last four sit behind types with a JSON form of their own
	}
	// Types with a JSON form of their own.
	for _, n := range []string{"type", "config", "socket_address", "address", "port_value"} {
		names[n] = true
	}
	var missing []string
	for n := range names {
		if !strings.Contains(section, "`"+n+"`") && !strings.Contains(section, "`"+n+" ") && !strings.Contains(section, " "+n+"`") {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the README's Configuration section does not name these fields:\n%s", strings.Join(missing, "\n"))
	}
}

func collectFieldNames(t reflect.Type, names map[string]bool, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	if reflect.PointerTo(t).Implements(nodeDecoderType) {
		return // Duration, Raw, Filter, …: their members are listed by hand
	}
	for _, f := range structFields(t) {
		names[f.name] = true
		for _, a := range f.alias {
			names[a] = true
		}
		collectFieldNames(t.Field(f.index).Type, names, seen)
	}
}
