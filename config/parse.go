package config

import (
	"fmt"
	"os"
	"reflect"
)

// Parse decodes a JSON config, applies defaults and validates it. Any
// problem — malformed JSON (reported with its line and column, and nothing
// else), an unknown field, a value of the wrong type, a semantic error —
// yields a *ValidationError listing every problem found, each with its JSON
// path.
func Parse(data []byte) (*Config, error) {
	root, err := parseTree(data)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Msg: err.Error()}}}
	}
	ps := &problems{}
	c := &Config{}
	(&decoder{ps: ps}).object(root, reflect.ValueOf(c).Elem(), "")
	decodeProblems := len(ps.list)
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		// A value that failed to decode was left at zero; what Validate says
		// about it, or about what it contains, would only repeat the problem.
	next:
		for _, p := range err.(*ValidationError).Problems {
			for _, d := range ps.list[:decodeProblems] {
				if covers(d.Path, p.Path) {
					continue next
				}
			}
			ps.list = append(ps.list, p)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads and parses the config file at path. Errors name the file and
// wrap a *ValidationError when the content is at fault.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}
