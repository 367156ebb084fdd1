package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics; it fails only with a *ValidationError that
// has problems; whatever it accepts marshals to JSON that it accepts again.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile(filepath.Join("testdata", "full.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(full), string(DefaultJSON()), baseJSON,
		``, `{}`, `[]`, `null`, `{"servers":[{}]}`, `{"servers": [}`,
		`{"servers":[{"listeners":[{"name":"a","address":"[::]:0","network":"tcp","filter_chains":[{"filters":[{"type":"proxy","config":null}]}]}]}]}`,
		`{"cluster_manager":{"clusters":[{"name":"c","hosts":[{"address":"x:1","weight":1e3}],"health_check":{"interval":"1s","timeout":"2s"}}]}}`,
	} {
		f.Add([]byte(seed))
	}
	mosn, _ := filepath.Glob(filepath.Join("testdata", "mosn", "*.json"))
	for _, file := range mosn {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %#v", err)
			}
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal an accepted config: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("re-parse of an accepted config failed: %v\ninput: %q\nmarshalled: %s", err, data, out)
		}
	})
}
