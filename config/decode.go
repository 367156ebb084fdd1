package config

import (
	"reflect"
	"strconv"
	"strings"
	"time"
)

// decoder fills Go values from a parsed JSON tree, matching members to the
// struct's json tags exactly and recording a Problem, with its JSON path, for
// every unknown member and every value of the wrong type. It never stops at
// the first problem: a bad value is left at its zero value.
type decoder struct {
	ps *problems
}

func (d *decoder) decode(n *node, v reflect.Value, path string) {
	switch v.Type() {
	case reflect.TypeFor[Duration]():
		d.duration(n, v.Addr().Interface().(*Duration), path)
		return
	case reflect.TypeFor[Filter]():
		d.filter(n, v.Addr().Interface().(*Filter), path)
		return
	}
	if v.Kind() == reflect.Pointer {
		if n.kind == kindNull {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
		return
	}
	if n.kind == kindNull { // as encoding/json: null leaves the zero value
		v.SetZero()
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.object(n, v, path)
	case reflect.Slice:
		if !d.expect(n, kindArray, path) {
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.items), len(n.items))
		for i, item := range n.items {
			d.decode(item, s.Index(i), index(path, i))
		}
		v.Set(s)
	case reflect.String:
		if d.expect(n, kindString, path) {
			v.SetString(n.text)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !d.expect(n, kindNumber, path) {
			return
		}
		i, err := strconv.ParseInt(n.text, 10, 64)
		switch {
		case err != nil && strings.ContainsAny(n.text, ".eE"):
			d.ps.add(path, "%s: expected an integer", n.text)
		case err != nil || v.OverflowInt(i):
			d.ps.add(path, "%s: number out of range", n.text)
		default:
			v.SetInt(i)
		}
	case reflect.Bool:
		if d.expect(n, kindBool, path) {
			v.SetBool(n.boolean)
		}
	default:
		d.ps.add(path, "cannot decode into %s", v.Type())
	}
}

// expect records a problem unless n is of kind k.
func (d *decoder) expect(n *node, k nodeKind, path string) bool {
	if n.kind == k {
		return true
	}
	article := "a"
	if k == kindArray || k == kindObject {
		article = "an"
	}
	d.ps.add(path, "expected %s %s, got %s", article, k, n.kind)
	return false
}

// object decodes a JSON object into the struct v by json tag.
func (d *decoder) object(n *node, v reflect.Value, path string) {
	if !d.expect(n, kindObject, path) {
		return
	}
	fields := jsonFields(v.Type())
	seen := make(map[string]bool, len(n.members))
	for _, m := range n.members {
		p := field(path, m.key)
		if seen[m.key] {
			d.ps.add(p, "duplicate field")
			continue
		}
		seen[m.key] = true
		i, ok := fields[m.key]
		if !ok {
			d.ps.add(p, "unknown field")
			continue
		}
		d.decode(m.val, v.Field(i), p)
	}
}

// jsonFields maps the json names of t's exported fields to their index.
// Fields tagged "-" are not decoded from JSON.
func jsonFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fields[name] = i
	}
	return fields
}

// duration decodes a Go duration string such as "30s".
func (d *decoder) duration(n *node, out *Duration, path string) {
	switch n.kind {
	case kindNull:
		out.Duration = 0
	case kindString:
		v, err := parseDuration(n.text)
		if err != nil {
			d.ps.add(path, "%s", err)
			return
		}
		out.Duration = v
	default:
		d.ps.add(path, `expected a duration string such as "30s", got %s`, n.kind)
	}
}

// filter decodes {"type": ..., "config": {...}}, choosing the config's
// shape by type.
func (d *decoder) filter(n *node, f *Filter, path string) {
	*f = Filter{}
	if !d.expect(n, kindObject, path) {
		return
	}
	var typ, cfg *node
	seen := map[string]bool{}
	for _, m := range n.members {
		p := field(path, m.key)
		if seen[m.key] {
			d.ps.add(p, "duplicate field")
			continue
		}
		seen[m.key] = true
		switch m.key {
		case "type":
			typ = m.val
		case "config":
			cfg = m.val
		default:
			d.ps.add(p, "unknown field")
		}
	}
	typePath := field(path, "type")
	if typ == nil || typ.kind == kindNull {
		d.ps.add(typePath, "required (%s or %s)", FilterHTTPProxy, FilterTCPProxy)
		return
	}
	if !d.expect(typ, kindString, typePath) {
		return
	}
	f.Type = typ.text
	var target reflect.Value
	switch f.Type {
	case FilterHTTPProxy:
		f.HTTP = &HTTPProxyConfig{}
		target = reflect.ValueOf(f.HTTP).Elem()
	case FilterTCPProxy:
		f.TCP = &TCPProxyConfig{}
		target = reflect.ValueOf(f.TCP).Elem()
	default:
		d.ps.add(typePath, "unknown filter type %q (want %s or %s)", f.Type, FilterHTTPProxy, FilterTCPProxy)
		return
	}
	if cfg != nil && cfg.kind != kindNull {
		d.object(cfg, target, field(path, "config"))
	}
}

// parseDuration parses a Go duration string, with an error that says what
// form is wanted.
func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, &durationError{s}
	}
	return v, nil
}

type durationError struct{ s string }

func (e *durationError) Error() string {
	return strconv.Quote(e.s) + `: invalid duration (want a form such as "30s", "1m30s" or "500ms")`
}
