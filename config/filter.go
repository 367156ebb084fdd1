package config

import (
	"fmt"

	jsoniter "github.com/json-iterator/go"
)

// filterJSON is a Filter's wire form.
type filterJSON struct {
	Type   string `json:"type"`
	Config any    `json:"config,omitempty"`
}

// MarshalJSON writes the filter as {"type": ..., "config": {...}}, the form
// Parse reads.
func (f Filter) MarshalJSON() ([]byte, error) {
	out := filterJSON{Type: f.Type}
	switch {
	case f.HTTP != nil:
		out.Config = f.HTTP
	case f.TCP != nil:
		out.Config = f.TCP
	}
	b, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("config: marshal filter: %w", err)
	}
	return b, nil
}

// UnmarshalJSON reads the form MarshalJSON writes, with the same checks as
// Parse, so that a Filter also decodes with encoding/json.
func (f *Filter) UnmarshalJSON(data []byte) error {
	n, err := parseTree(data)
	if err != nil {
		return fmt.Errorf("config: filter: %w", err)
	}
	ps := &problems{}
	(&decoder{ps: ps}).filter(n, f, "")
	if err := ps.err(); err != nil {
		return fmt.Errorf("config: filter: %w", err)
	}
	return nil
}
