package config

import (
	"fmt"
	"strconv"
)

// MarshalJSON writes the duration as a Go duration string ("30s").
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(d.String())), nil
}

// UnmarshalJSON reads a Go duration string; null leaves d unchanged.
func (d *Duration) UnmarshalJSON(data []byte) error {
	n, err := parseTree(data)
	if err != nil {
		return fmt.Errorf("config: duration: %w", err)
	}
	switch n.kind {
	case kindNull:
		return nil
	case kindString:
		v, err := parseDuration(n.text)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		d.Duration = v
		return nil
	default:
		return fmt.Errorf(`config: expected a duration string such as "30s", got %s`, n.kind)
	}
}
