package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
)

// maxNesting bounds how deep a document may nest. A real config nests about
// ten levels; the bound keeps hostile input from exhausting the stack.
const maxNesting = 64

// nodeKind is the JSON type of a parsed value.
type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	default:
		return "object"
	}
}

// node is one JSON value. Objects keep their members in document order so
// that problems are reported in the order a reader meets them.
type node struct {
	kind    nodeKind
	boolean bool
	text    string // string contents, or the literal of a number
	items   []*node
	members []member
}

type member struct {
	key string
	val *node
}

// syntaxError is malformed JSON at a 1-based line and column.
type syntaxError struct {
	line, col int
	msg       string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at line %d, column %d: %s", e.line, e.col, e.msg)
}

// parseTree reads one JSON document with jsoniter's Iterator into a tree.
// Anything after the top-level value other than whitespace is an error.
func parseTree(data []byte) (*node, error) {
	r := &treeReader{data: data, iter: jsoniter.ParseBytes(jsoniter.ConfigCompatibleWithStandardLibrary, data)}
	root := r.value(0)
	if r.err == nil {
		// WhatIsNext at the end of the input reports InvalidValue and io.EOF.
		r.iter.Error = nil
		if r.iter.WhatIsNext() != jsoniter.InvalidValue || r.offset() < len(data) {
			r.failAt(r.offset(), "unexpected data after the top-level value")
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return root, nil
}

type treeReader struct {
	data []byte
	iter *jsoniter.Iterator
	err  *syntaxError
}

// offset is the iterator's read position in data. jsoniter does not export
// it, so it is read from the unexported field; -1 if that ever changes.
func (r *treeReader) offset() int {
	f := reflect.ValueOf(r.iter).Elem().FieldByName("head")
	if !f.IsValid() || f.Kind() != reflect.Int {
		return -1
	}
	return int(f.Int())
}

// failAt records the first syntax error, at byte offset off.
func (r *treeReader) failAt(off int, msg string) {
	if r.err != nil {
		return
	}
	line, col := 0, 0
	if off >= 0 {
		if off > len(r.data) {
			off = len(r.data)
		}
		line, col = lineCol(r.data, off)
	}
	r.err = &syntaxError{line: line, col: col, msg: msg}
}

// fail records a syntax error at the byte jsoniter just consumed (it reports
// a problem after reading the byte that caused it), or at the end of input.
func (r *treeReader) fail(msg string) {
	off := r.offset()
	if r.iter.Error == io.EOF || strings.HasSuffix(msg, "found \x00") || off < 0 {
		r.failAt(len(r.data), "unexpected end of input")
		return
	}
	if off > 0 {
		off--
	}
	r.failAt(off, msg)
}

// iterMessage is jsoniter's error without its operation name and buffer dump.
func (r *treeReader) iterMessage() string {
	if r.iter.Error == nil {
		return "invalid JSON"
	}
	msg := r.iter.Error.Error()
	if i := strings.Index(msg, ", error found in #"); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

func (r *treeReader) failed() bool {
	if r.err != nil {
		return true
	}
	if r.iter.Error != nil {
		r.fail(r.iterMessage())
		return true
	}
	return false
}

func (r *treeReader) value(depth int) *node {
	if r.failed() {
		return nil
	}
	if depth > maxNesting {
		r.failAt(r.offset(), fmt.Sprintf("nesting deeper than %d levels", maxNesting))
		return nil
	}
	it := r.iter
	switch it.WhatIsNext() {
	case jsoniter.ObjectValue:
		n := &node{kind: kindObject}
		it.ReadObjectCB(func(_ *jsoniter.Iterator, key string) bool {
			if r.failed() {
				return false
			}
			if !r.keyWasQuoted() {
				r.fail("object key must be a string")
				return false
			}
			v := r.value(depth + 1)
			if v == nil {
				return false
			}
			n.members = append(n.members, member{key: key, val: v})
			return true
		})
		if r.failed() {
			return nil
		}
		return n
	case jsoniter.ArrayValue:
		n := &node{kind: kindArray}
		it.ReadArrayCB(func(*jsoniter.Iterator) bool {
			v := r.value(depth + 1)
			if v == nil {
				return false
			}
			n.items = append(n.items, v)
			return true
		})
		if r.failed() {
			return nil
		}
		return n
	case jsoniter.StringValue:
		s := it.ReadString()
		if r.failed() {
			return nil
		}
		return &node{kind: kindString, text: s}
	case jsoniter.NumberValue:
		start := r.offset()
		num := string(it.ReadNumber())
		if it.Error == io.EOF {
			it.Error = nil // a number may end the input
		}
		if r.failed() {
			return nil
		}
		if !validNumber(num) {
			r.failAt(start, fmt.Sprintf("invalid number %q", num))
			return nil
		}
		return &node{kind: kindNumber, text: num}
	case jsoniter.BoolValue:
		b := it.ReadBool()
		if r.failed() {
			return nil
		}
		return &node{kind: kindBool, boolean: b}
	case jsoniter.NilValue:
		it.ReadNil()
		if r.failed() {
			return nil
		}
		return &node{kind: kindNull}
	default:
		off := r.offset()
		if off >= len(r.data) || off < 0 {
			r.failAt(len(r.data), "unexpected end of input")
		} else {
			c, _ := utf8.DecodeRune(r.data[off:])
			r.failAt(off, fmt.Sprintf("unexpected character %q", c))
		}
		return nil
	}
}

// keyWasQuoted reports whether the object key just read was a string:
// jsoniter also accepts a bare null as a key after a comma.
func (r *treeReader) keyWasQuoted() bool {
	off := r.offset() // just after the ':'
	if off < 0 {
		return true
	}
	i := off - 2
	for i >= 0 && isSpace(r.data[i]) {
		i--
	}
	return i >= 0 && r.data[i] == '"'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// validNumber checks a literal against JSON's number grammar; jsoniter's
// ReadNumber collects number-like bytes without checking their order.
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lineCol turns a byte offset into a 1-based line and a 1-based column
// counted in characters.
func lineCol(data []byte, off int) (int, int) {
	line, start := 1, 0
	for i := 0; i < off; i++ {
		if data[i] == '\n' {
			line++
			start = i + 1
		}
	}
	return line, utf8.RuneCount(data[start:off]) + 1
}
