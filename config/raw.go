package config

import (
	"fmt"
	"reflect"
	"strconv"

	jsoniter "github.com/json-iterator/go"
)

// Raw is a JSON value kept as written, for a field whose contents mosnlite
// does not read (or reads only in part, see Decode). The zero Raw is absent.
type Raw struct{ n *node }

// IsZero reports whether the value is absent or says nothing (null, {}, []…).
func (r Raw) IsZero() bool { return r.n == nil || isEmpty(r.n) }

func (r *Raw) decodeNode(_ *decoder, n *node, _ string) {
	if n.kind == kindNull {
		r.n = nil
		return
	}
	r.n = n
}

// MarshalJSON writes the value back as JSON.
func (r Raw) MarshalJSON() ([]byte, error) {
	if r.n == nil {
		return []byte("null"), nil
	}
	return r.n.appendJSON(nil), nil
}

// UnmarshalJSON keeps any JSON value.
func (r *Raw) UnmarshalJSON(data []byte) error {
	n, err := parseTree(data)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	r.decodeNode(nil, n, "")
	return nil
}

// members returns the value's object members, nil if it is not an object.
func (r Raw) members() []member {
	if r.n == nil || r.n.kind != kindObject {
		return nil
	}
	return r.n.members
}

// decodeInto decodes the value into v (a pointer) with d, as if it had been
// typed as v's type; problems carry path.
func (r Raw) decodeInto(d *decoder, v any, path string) {
	if r.n == nil {
		return
	}
	d.decode(r.n, reflect.ValueOf(v).Elem(), path)
}

// appendJSON writes n as JSON.
func (n *node) appendJSON(b []byte) []byte {
	switch n.kind {
	case kindNull:
		return append(b, "null"...)
	case kindBool:
		return strconv.AppendBool(b, n.boolean)
	case kindNumber:
		return append(b, n.text...)
	case kindString:
		return appendJSONString(b, n.text)
	case kindArray:
		b = append(b, '[')
		for i, it := range n.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.appendJSON(b)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i, m := range n.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, m.key)
			b = append(b, ':')
			b = m.val.appendJSON(b)
		}
		return append(b, '}')
	}
}

func appendJSONString(b []byte, s string) []byte {
	q, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(s)
	if err != nil { // a string always marshals
		return append(b, strconv.Quote(s)...)
	}
	return append(b, q...)
}
