package config

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The JSON a Config marshals to is MOSN's shape, the form Parse reads: each
// value as written (mosnlite's aliases stay aliases), with defaults filled
// in. Both encoding/json and jsoniter produce it, through these methods.

// MarshalJSON writes the config with encoding/json, so that every marshaller
// gives the same output (jsoniter does not know omitzero).
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal(plain(c))
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b, nil
}

// UnmarshalJSON parses data as Parse does: decode, defaults and validation.
func (c *Config) UnmarshalJSON(data []byte) error {
	p, err := Parse(data)
	if err != nil {
		return err
	}
	*c = *p
	return nil
}

// MarshalJSON writes the filter as {"type": ..., "config": {...}}.
func (f Filter) MarshalJSON() ([]byte, error) {
	out := struct {
		Type   string `json:"type"`
		Config any    `json:"config,omitempty"`
	}{Type: f.Type}
	switch {
	case f.HTTP != nil:
		out.Config = f.HTTP
	case f.TCP != nil:
		out.Config = f.TCP
	case f.Router != nil:
		out.Config = f.Router
	}
	b, err := json.Marshal(out)
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
	d := &decoder{ps: &problems{}, ws: &problems{}}
	f.decodeNode(d, n, "")
	if err := d.ps.err(); err != nil {
		return fmt.Errorf("config: filter: %w", err)
	}
	return nil
}

// MarshalJSON writes MOSN's form, or the string mosnlite's form had.
func (a AdminAddress) MarshalJSON() ([]byte, error) {
	if a.SocketAddress == nil {
		return json.Marshal(a.Text)
	}
	return json.Marshal(struct {
		SocketAddress *SocketAddress `json:"socket_address"`
	}{a.SocketAddress})
}

// MarshalJSON writes {"type": ..., "config": ...}.
func (s MetricsSink) MarshalJSON() ([]byte, error) {
	out := struct {
		Type   string `json:"type"`
		Config any    `json:"config,omitempty"`
	}{Type: s.Type}
	switch {
	case s.Prometheus != nil:
		out.Config = s.Prometheus
	case s.Config.n != nil:
		out.Config = s.Config
	}
	return json.Marshal(out)
}

// MarshalJSON writes the boolean or the string as it was written.
func (o OriginalDst) MarshalJSON() ([]byte, error) {
	if o.Bool != nil {
		return json.Marshal(*o.Bool)
	}
	return json.Marshal(o.Value)
}

// MarshalJSON writes the count, or the string as it was written.
func (p Processor) MarshalJSON() ([]byte, error) {
	if p.text != "" {
		return json.Marshal(p.text)
	}
	return []byte(strconv.Itoa(p.N)), nil
}

// IsZero lets omitzero leave an unset duration out.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// redactedPrivateKey replaces an inline private key in marshalled output
// (the admin config dump), as MOSN's config_dump does.
const redactedPrivateKey = "***REDACTED***"

// MarshalJSON writes the TLS context with an inline PEM private key
// redacted; a key file path is written as is.
func (t TLSConfig) MarshalJSON() ([]byte, error) {
	type plain TLSConfig
	if strings.Contains(t.PrivateKey, "-----BEGIN") {
		t.PrivateKey = redactedPrivateKey
	}
	return json.Marshal(plain(t))
}
