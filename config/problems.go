package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a config: where (a JSON path such as
// "servers[0].listeners[1].address", empty for the whole document) and what.
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// ValidationError lists every problem found in a config, in the order they
// were found. Parse, Load and Validate return it; use errors.As to get it.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems while walking a config.
type problems struct {
	list []Problem
}

func (ps *problems) add(path, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems as a *ValidationError, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps.list}
}

// covers reports whether a problem at path p makes a problem at q redundant:
// q is p itself or lies inside it.
func covers(p, q string) bool {
	if !strings.HasPrefix(q, p) {
		return false
	}
	if len(q) == len(p) || p == "" {
		return true
	}
	return q[len(p)] == '.' || q[len(p)] == '['
}

// field joins a JSON path and a member name.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index joins a JSON path and an array index.
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}
