package proxy

// links are an element's places in a chain.
type links[T any] struct{ prev, next *T }

// linked is an element type that carries its links.
type linked[T any] interface {
	*T
	chainLinks() *links[T]
}

// chain is an intrusive doubly linked list, oldest first: the elements
// carry their links, so that a push or an unlink allocates nothing. The
// zero value is empty.
type chain[T any, P linked[T]] struct{ head, tail *T }

// push appends e.
func (l *chain[T, P]) push(e *T) {
	el := P(e).chainLinks()
	el.prev, el.next = l.tail, nil
	if l.tail != nil {
		P(l.tail).chainLinks().next = e
	} else {
		l.head = e
	}
	l.tail = e
}

// unlink takes e out.
func (l *chain[T, P]) unlink(e *T) {
	el := P(e).chainLinks()
	if el.prev != nil {
		P(el.prev).chainLinks().next = el.next
	} else {
		l.head = el.next
	}
	if el.next != nil {
		P(el.next).chainLinks().prev = el.prev
	} else {
		l.tail = el.prev
	}
	el.prev, el.next = nil, nil
}
