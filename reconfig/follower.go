package reconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Follower is the new process's end of the drain stream (see Successor):
// it takes what the draining predecessor sends — counter increments,
// connections, bye — and answers migration batches and the bye. After the
// bye the stream stays open, so that the predecessor can tell our death
// (the stream breaks) from our exit (Release comes first) during its watch.
type Follower struct {
	conn    *net.UnixConn
	oldPID  int
	handler ConnHandler
	log     *logrus.Entry
	now     func() time.Time // the clock migration batches are timed on

	wmu    sync.Mutex
	closed bool
}

// NewFollower takes over conn, the stream from the predecessor oldPID; h
// gets the connections it moves (nil refuses them all).
func NewFollower(conn *net.UnixConn, oldPID int, h ConnHandler, log *logrus.Entry) *Follower {
	return &Follower{conn: conn, oldPID: oldPID, handler: h, log: orDiscard(log).WithField("old_pid", oldPID), now: time.Now}
}

// FollowHooks are what Follow calls, from its own goroutine; each may be nil.
type FollowHooks struct {
	// Counts gets each push of counter and histogram increments, as it
	// comes. It is called even for an empty push: the first complete one
	// (More false) after the ack tells the caller that the old process has
	// stopped serving and sent everything it counted until then.
	Counts func(Counts)
	// Migrated runs when the old process says its connection migration is
	// over (an older one never does).
	Migrated func(MigrationDone)
	// Bye runs on the bye, before it is answered: the predecessor exits only
	// after that, so whatever Bye records (it is gone) is true before anyone
	// can see it go.
	Bye func()
}

// Follow reads what the predecessor sends while it drains, passing it to h,
// until it says bye (nil), the stream breaks without a bye (an error) or ctx
// ends (an error). Held connections whose batch never commits are released
// when it returns. After an error the stream is released and closed; after
// a bye it stays open until Release or until the predecessor closes it.
func (f *Follower) Follow(ctx context.Context, h FollowHooks) (err error) {
	rx := newReceiver(f.handler, f.log, f.now)
	defer func() {
		rx.releaseAll()
		if err != nil {
			f.Release()
		}
	}()
	stop := context.AfterFunc(ctx, func() { f.conn.SetReadDeadline(time.Now()) })
	defer stop()
	d := newDecoder(f.conn)
	for {
		fr, err := d.Next()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, ctx.Err())
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("reconfig: old process (pid %d) closed the handoff connection without bye", f.oldPID)
			}
			return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, err)
		}
		if fr.Type == typeConnOffer {
			rx.offer(fr) // takes the frame's fds
			continue
		}
		fr.CloseFDs() // no other frame carries fds after the manifest
		switch fr.Type {
		case typeCounters:
			var m Counts
			if err := decodePayload(fr, &m); err != nil {
				return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, err)
			}
			if h.Counts != nil {
				h.Counts(m)
			}
		case typeMigrated:
			var m MigrationDone
			if err := decodePayload(fr, &m); err != nil {
				return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, err)
			}
			if h.Migrated != nil {
				h.Migrated(m)
			}
		case typeConnCommit:
			n, err := rx.commit(fr, f)
			if err != nil {
				return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, err)
			}
			f.log.WithField("connections", n).Debug("migration batch answered")
		case typeBye:
			stop()
			f.conn.SetReadDeadline(time.Time{})
			f.log.Info("old process said bye")
			if h.Bye != nil {
				h.Bye()
			}
			p, _ := json.Marshal(byeMsg{PID: os.Getpid()})
			// Optional: an older old process, which does not know it, skips it.
			if err := f.writeBy(typeDone, flagOptional, p, time.Now().Add(nackWriteTimeout)); err != nil {
				f.log.WithError(err).Debug("confirm the bye")
			}
			go f.holdUntilClosed(d)
			return nil
		default:
			return fmt.Errorf("reconfig: follow old process (pid %d): %w", f.oldPID, badFrame("unexpected %s frame", typeName(fr.Type)))
		}
	}
}

// holdUntilClosed keeps the stream open after the bye until the predecessor
// closes it (its watch is over) or Release closes it here.
func (f *Follower) holdUntilClosed(d interface{ Next() (frame, error) }) {
	for {
		fr, err := d.Next()
		if err != nil {
			break
		}
		fr.CloseFDs()
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if !f.closed {
		f.closed = true
		f.conn.Close()
	}
}

// Release tells the predecessor to stop watching us — we stop, or hand over
// to a successor of our own, on purpose — and closes the stream. It is
// idempotent and safe at any time.
func (f *Follower) Release() {
	p, _ := json.Marshal(byeMsg{PID: os.Getpid()})
	_ = f.writeBy(typeRelease, flagOptional, p, time.Now().Add(nackWriteTimeout))
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if !f.closed {
		f.closed = true
		f.conn.Close()
	}
}

// writeBy writes one frame with a write deadline.
func (f *Follower) writeBy(typ msgType, flags uint8, p []byte, deadline time.Time) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.closed {
		return net.ErrClosed
	}
	f.conn.SetWriteDeadline(deadline)
	err := writeFrame(f.conn, typ, flags, p, nil)
	f.conn.SetWriteDeadline(time.Time{})
	return err
}
