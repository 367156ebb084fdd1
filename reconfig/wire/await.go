package wire

import (
	"encoding/binary"
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// AwaitFrame waits, within c's read deadline, until c's receive queue holds
// one whole frame — header and payload — or the end of the stream or an
// error, reading none of it; past the deadline it returns its error
// (os.ErrDeadlineExceeded) with nothing consumed. A read that follows then
// never stops halfway through a frame because a deadline passed while this
// process was stalled (a deadline is checked before each read). A frame
// whose payload is over atMost (one that may not fit in the socket's
// buffer, or one the decoder refuses) is not waited for: the read takes it
// as it comes.
func AwaitFrame(c *net.UnixConn, atMost int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		var h [HeaderLen]byte
		n, _, err := unix.Recvfrom(int(fd), h[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false
		case err != nil || n == 0:
			return true // an error or EOF: the read reports it
		case n < HeaderLen:
			return false
		}
		length := binary.BigEndian.Uint32(h[6:])
		if uint64(length) > uint64(atMost) {
			return true
		}
		queued, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		return err != nil || queued >= HeaderLen+int(length)
	})
}
