//go:build !race

package proxy

func sysRead(fd int, b []byte) (int, error) { return recvRaw(fd, b) }

func sysWrite(fd int, b []byte) (int, error) { return sendRaw(fd, b) }
