package config

import (
	"reflect"
	"strconv"
	"strings"
	"time"
)

// decoder fills Go values from a parsed JSON tree as MOSN's encoding/json
// does — an object member goes to the field whose json name matches it
// exactly, else to the first whose name matches it case-insensitively — but
// strictly: an unknown member, a member given twice (in any case), or a
// value of the wrong type is a problem with its JSON path. It never stops at
// the first problem: a bad value is left at its zero value.
//
// Struct tags beyond json:
//   - alias:"a,b"   other names accepted for the field (mosnlite's forms);
//   - nanoseconds:"allowed" a Duration that may also be a number of ns;
//   - inert:"why"   a set (non-empty) value is accepted with a warning,
//     "ignored by mosnlite (why)";
//   - refuse:"what" a set value is an error, "what is not supported by
//     mosnlite".
//
// A field whose type has an active() method counts as set only when
// active() says so.
type decoder struct {
	ps *problems // errors
	ws *problems // warnings
}

// nodeDecoder is implemented by types with a JSON form of their own.
type nodeDecoder interface {
	decodeNode(d *decoder, n *node, path string)
}

// activeChecker is implemented by types that can be present yet off.
type activeChecker interface {
	active() bool
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

func (d *decoder) decode(n *node, v reflect.Value, path string) {
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n, path)
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
		if len(n.items) == 0 { // [] and an absent list mean the same
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.items), len(n.items))
		for i, item := range n.items {
			d.decode(item, s.Index(i), index(path, i))
		}
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			d.ps.add(path, "cannot decode into %s", v.Type())
			return
		}
		if !d.expect(n, kindObject, path) {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.members))
		for _, mem := range n.members {
			p := field(path, mem.key)
			k := reflect.ValueOf(mem.key).Convert(v.Type().Key())
			if m.MapIndex(k).IsValid() {
				d.ps.add(p, "duplicate field")
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(mem.val, e, p)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
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
	case reflect.Float64:
		if !d.expect(n, kindNumber, path) {
			return
		}
		f, err := strconv.ParseFloat(n.text, 64)
		if err != nil {
			d.ps.add(path, "%s: number out of range", n.text)
			return
		}
		v.SetFloat(f)
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

// structField is one decodable field of a struct.
type structField struct {
	index  int
	name   string   // the json name
	alias  []string // other accepted names
	inert  string
	refuse string
	nanos  bool // a Duration that may be written as nanoseconds
}

// structFields lists t's decodable fields in order. Fields tagged "-" and
// unexported ones are not decoded.
func structFields(t reflect.Type) []structField {
	out := make([]structField, 0, t.NumField())
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
		sf := structField{index: i, name: name, inert: f.Tag.Get("inert"), refuse: f.Tag.Get("refuse"),
			nanos: f.Tag.Get("nanoseconds") == "allowed"}
		if a := f.Tag.Get("alias"); a != "" {
			sf.alias = strings.Split(a, ",")
		}
		out = append(out, sf)
	}
	return out
}

// lookup finds the field a member key goes to, as encoding/json does: an
// exact name (or alias) first, then a case-insensitive one. It returns the
// name the key matched, for paths.
func lookup(fields []structField, key string) (*structField, string) {
	for i := range fields {
		f := &fields[i]
		if f.name == key {
			return f, f.name
		}
		for _, a := range f.alias {
			if a == key {
				return f, a
			}
		}
	}
	for i := range fields {
		f := &fields[i]
		if strings.EqualFold(f.name, key) {
			return f, f.name
		}
		for _, a := range f.alias {
			if strings.EqualFold(a, key) {
				return f, a
			}
		}
	}
	return nil, ""
}

// object decodes a JSON object into the struct v.
func (d *decoder) object(n *node, v reflect.Value, path string) {
	if !d.expect(n, kindObject, path) {
		return
	}
	fields := structFields(v.Type())
	seen := make(map[int]string, len(n.members))
	for _, m := range n.members {
		f, name := lookup(fields, m.key)
		if f == nil {
			d.ps.add(field(path, m.key), "unknown field")
			continue
		}
		p := field(path, name)
		if prev, dup := seen[f.index]; dup {
			if prev == m.key {
				d.ps.add(p, "duplicate field")
			} else {
				d.ps.add(p, "duplicate field (also given as %q)", prev)
			}
			continue
		}
		seen[f.index] = m.key
		before := len(d.ps.list)
		fv := v.Field(f.index)
		if !f.nanos || !d.nanoseconds(m.val, fv, p) {
			d.decode(m.val, fv, p)
		}
		if len(d.ps.list) > before || (f.inert == "" && f.refuse == "") || !isSet(m.val, fv) {
			continue
		}
		if f.refuse != "" {
			d.ps.add(p, "%s is not supported by mosnlite", f.refuse)
		} else {
			d.ws.add(p, "ignored by mosnlite (%s)", f.inert)
		}
	}
}

// isSet reports whether a decoded member counts as set: its JSON is not
// empty and, if its type can say so, it is active.
func isSet(n *node, v reflect.Value) bool {
	if isEmpty(n) {
		return false
	}
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return false
	}
	if a, ok := v.Interface().(activeChecker); ok {
		return a.active()
	}
	if v.CanAddr() {
		if a, ok := v.Addr().Interface().(activeChecker); ok {
			return a.active()
		}
	}
	return true
}

// isEmpty reports whether a JSON value says nothing: null, false, zero, "",
// or an array or object of empty values only.
func isEmpty(n *node) bool {
	switch n.kind {
	case kindNull:
		return true
	case kindBool:
		return !n.boolean
	case kindNumber:
		f, err := strconv.ParseFloat(n.text, 64)
		return err == nil && f == 0
	case kindString:
		return n.text == ""
	case kindArray:
		for _, it := range n.items {
			if !isEmpty(it) {
				return false
			}
		}
		return true
	default:
		for _, m := range n.members {
			if !isEmpty(m.val) {
				return false
			}
		}
		return true
	}
}

// decodeNode decodes a Go duration string such as "30s" (or the number 0).
func (out *Duration) decodeNode(d *decoder, n *node, path string) {
	switch {
	case n.kind == kindNull:
		out.Duration = 0
	case n.kind == kindString:
		v, err := parseDuration(n.text)
		if err != nil {
			d.ps.add(path, "%s", err)
			return
		}
		out.Duration = v
	case n.kind == kindNumber && isEmpty(n):
		out.Duration = 0
	default:
		d.ps.add(path, `expected a duration string such as "30s", got %s`, n.kind)
	}
}

// nanoseconds decodes a duration field tagged nanoseconds:"allowed": MOSN
// writes some (tcp_proxy's idle_timeout) as Go's time.Duration, a whole
// number of nanoseconds; a duration string works too.
func (d *decoder) nanoseconds(n *node, v reflect.Value, path string) bool {
	if n.kind != kindNumber || v.Type() != reflect.TypeFor[Duration]() {
		return false
	}
	i, err := strconv.ParseInt(n.text, 10, 64)
	if err != nil || i < 0 {
		d.ps.add(path, "%s: expected whole nanoseconds, or a duration string such as \"30s\"", n.text)
		return true
	}
	v.Set(reflect.ValueOf(Duration{time.Duration(i)}))
	return true
}

// filterJSON is a network filter's wire form.
type filterJSON struct {
	Type   string `json:"type"`
	Config Raw    `json:"config"`
}

// typed decodes {"type": ..., "config": ...}; ok is false if n is no object.
func (d *decoder) typed(n *node, path string) (fj filterJSON, ok bool) {
	d.object(n, reflect.ValueOf(&fj).Elem(), path)
	return fj, n.kind == kindObject
}

// decodeNode decodes {"type": ..., "config": {...}}, choosing the config's
// shape by type. Types mosnlite does not serve are kept with no config, for
// Validate to refuse by name.
func (f *Filter) decodeNode(d *decoder, n *node, path string) {
	*f = Filter{}
	fj, ok := d.typed(n, path)
	if !ok {
		return
	}
	f.Type = fj.Type
	var target reflect.Value
	switch f.Type {
	case FilterHTTPProxy:
		f.HTTP = &HTTPProxyConfig{}
		target = reflect.ValueOf(f.HTTP).Elem()
	case FilterTCPProxy:
		f.TCP = &TCPProxyConfig{}
		target = reflect.ValueOf(f.TCP).Elem()
	case FilterConnectionManager:
		f.Router = &Router{}
		target = reflect.ValueOf(f.Router).Elem()
	default:
		return
	}
	if fj.Config.n != nil {
		d.object(fj.Config.n, target, field(path, "config"))
	}
}

// decodeNode decodes use_original_dst: a boolean or a string.
func (o *OriginalDst) decodeNode(d *decoder, n *node, path string) {
	*o = OriginalDst{}
	switch n.kind {
	case kindBool:
		b := n.boolean
		o.Bool = &b
	case kindString:
		o.Value = n.text
	default:
		d.ps.add(path, `expected a boolean or "tproxy" or "redirect", got %s`, n.kind)
	}
}

func (o *OriginalDst) active() bool {
	return o != nil && ((o.Bool != nil && *o.Bool) || o.Value != "")
}

// decodeNode decodes a processor count, or a string: "auto" or a number.
func (p *Processor) decodeNode(d *decoder, n *node, path string) {
	*p = Processor{}
	switch n.kind {
	case kindNumber:
		i, err := strconv.ParseInt(n.text, 10, 32)
		if err != nil {
			d.ps.add(path, "%s: expected a whole number of processors", n.text)
			return
		}
		p.N = int(i)
	case kindString:
		p.text = n.text
		if strings.EqualFold(n.text, "auto") {
			p.Auto = true
			return
		}
		i, err := strconv.Atoi(n.text)
		if err != nil {
			d.ps.add(path, "%q: expected a number of processors or \"auto\"", n.text)
			return
		}
		p.N = i
	default:
		d.ps.add(path, `expected a number or "auto", got %s`, n.kind)
	}
}

// decodeNode decodes an admin address: mosnlite's string, or MOSN's
// {"socket_address": {"address": ..., "port_value": ...}}.
func (a *AdminAddress) decodeNode(d *decoder, n *node, path string) {
	*a = AdminAddress{}
	switch n.kind {
	case kindString:
		a.Text = n.text
	case kindObject:
		var info struct {
			SocketAddress *SocketAddress `json:"socket_address"`
		}
		d.object(n, reflect.ValueOf(&info).Elem(), path)
		if info.SocketAddress == nil {
			info.SocketAddress = &SocketAddress{}
		}
		a.SocketAddress = info.SocketAddress
	case kindNull:
	default:
		d.ps.add(path, `expected {"socket_address": {"address": ..., "port_value": ...}} or an address string, got %s`, n.kind)
	}
}

// decodeNode decodes a metrics sink {"type": ..., "config": {...}}.
func (s *MetricsSink) decodeNode(d *decoder, n *node, path string) {
	*s = MetricsSink{}
	fj, ok := d.typed(n, path)
	if !ok {
		return
	}
	s.Type = fj.Type
	if s.Type != "prometheus" {
		s.Config = fj.Config
		return
	}
	s.Prometheus = &PrometheusSink{}
	if fj.Config.n != nil {
		d.object(fj.Config.n, reflect.ValueOf(s.Prometheus).Elem(), field(path, "config"))
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
