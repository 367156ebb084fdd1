package proxy

import (
	"fmt"
	"runtime/debug"

	"github.com/sirupsen/logrus"
)

// maxPanicStack bounds the stack a panic's log line carries.
const maxPanicStack = 8 << 10

// logPanic logs, once, a panic that ended a connection's goroutine, with
// its stack (bounded), as MOSN's GoWithRecover does: the process serves on.
func logPanic(log *logrus.Entry, what string, r any) {
	stack := debug.Stack()
	if len(stack) > maxPanicStack {
		stack = stack[:maxPanicStack]
	}
	log.WithField("panic", fmt.Sprint(r)).WithField("stack", string(stack)).
		Error(what + " panicked; that connection is closed, the process serves on")
}
