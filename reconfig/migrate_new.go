package reconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
)

// ConnHandler takes the connections a draining predecessor moves here.
// Follow calls it from its own goroutine, one call at a time.
type ConnHandler interface {
	// Hold adopts an offered connection without serving it: nothing may be
	// read or written on it yet. offer.Files are closed when Hold returns,
	// so it duplicates what it keeps (net.FileConn does). An error refuses
	// the offer; its text goes back to the old process.
	Hold(offer ConnOffer) error
	// Start serves held connections: the old process has let go of them.
	Start(ids []uint64)
	// Release closes held connections that will not be served here (a plain
	// close of this process's copies): the old process keeps them.
	Release(ids []uint64)
}

// AcceptConnections makes this process take connections from the old one
// after the ack: targets are sent with the ack (the old process offers only
// those), and Follow hands the offers to h. Call it before Ack; without it
// the old process drains everything as before.
func (u *Upgrade) AcceptConnections(targets []MigrationTarget, h ConnHandler) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.fresh:
		return errors.New("reconfig: accept connections: fresh start, nobody to take them from")
	case u.acked || u.failed:
		return errors.New("reconfig: accept connections: too late, the ack is sent")
	case h == nil:
		return errors.New("reconfig: accept connections: no handler")
	}
	u.targets = validTargets(targets)
	u.handler = h
	return nil
}

// receiver is the new side of migration inside Follow: the offers of the
// batch in progress, until its commit.
type receiver struct {
	h       ConnHandler // nil: every offer is refused
	log     *logrus.Entry
	now     func() time.Time
	held    map[uint64]bool
	refused map[uint64]string
	// first is when the batch in progress began here (its first offer
	// arrived; zero between batches): its time limit runs from then, on
	// this process's own (monotonic) clock.
	first time.Time
}

func newReceiver(h ConnHandler, log *logrus.Entry, now func() time.Time) *receiver {
	return &receiver{h: h, log: log, now: now, held: map[uint64]bool{}, refused: map[uint64]string{}}
}

// deadline is when a batch with this time limit ends here: timeout after
// its first offer arrived, or, from an earlier version that sends none,
// its wall-clock deadline.
func (r *receiver) deadline(timeout time.Duration, wall time.Time) time.Time {
	if timeout <= 0 {
		return wall
	}
	if r.first.IsZero() {
		r.first = r.now()
	}
	return r.first.Add(timeout)
}

// offer takes one offer frame and its fds (closed here on every path).
func (r *receiver) offer(f frame) {
	defer f.CloseFDs()
	o, err := parseOffer(f.Payload, len(f.FDs))
	if err != nil {
		r.log.WithError(err).Warn("migration: refused a connection offer")
		if o.ID != 0 {
			r.refuse(o.ID, err.Error())
		}
		return
	}
	switch {
	case r.h == nil:
		r.refuse(o.ID, "this process takes no connections")
		return
	case r.held[o.ID] || r.refused[o.ID] != "":
		r.refuse(o.ID, "offer id repeated")
		return
	case len(r.held) >= maxBatchOffers:
		r.refuse(o.ID, "too many offers in one batch")
		return
	case r.now().After(r.deadline(o.Timeout, o.Deadline)):
		r.refuse(o.ID, "offer arrived after its deadline")
		return
	}
	o.Files = make([]*os.File, len(f.FDs))
	for i, fd := range f.FDs {
		o.Files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("%s-%d-%d", o.Kind, o.ID, i))
	}
	f.FDs = nil // owned by the files now
	defer func() {
		for _, file := range o.Files {
			file.Close()
		}
	}()
	if err := r.h.Hold(o); err != nil {
		r.refuse(o.ID, err.Error())
		return
	}
	r.held[o.ID] = true
}

// refuse records a refusal; an offer held under the same id is let go.
func (r *receiver) refuse(id uint64, reason string) {
	if r.held[id] {
		delete(r.held, id)
		r.h.Release([]uint64{id})
	}
	if len(r.refused) < maxBatchOffers {
		r.refused[id] = truncate(reason, maxReasonLen-len("…"))
	}
}

// commit answers a batch: the held offers it names are accepted, unless the
// deadline has passed; everything else held is released. Accepted ones are
// served only once the result is written.
func (r *receiver) commit(f frame, w *Follower) (accepted int, err error) {
	c, err := parseCommit(f.Payload)
	if err != nil {
		return 0, err
	}
	deadline := r.deadline(c.Timeout, c.Deadline)
	r.first = time.Time{} // the next offer begins the next batch
	late := r.now().After(deadline)
	res := resultMsg{Batch: c.Batch, Accepted: []uint64{}, Refused: []Refusal{}}
	for _, id := range c.IDs {
		switch {
		case r.refused[id] != "":
			res.Refused = append(res.Refused, Refusal{ID: id, Reason: r.refused[id]})
		case !r.held[id]:
			res.Refused = append(res.Refused, Refusal{ID: id, Reason: "offer not received"})
		case late:
			res.Refused = append(res.Refused, Refusal{ID: id, Reason: "commit arrived after the batch deadline"})
		default:
			res.Accepted = append(res.Accepted, id)
			delete(r.held, id)
		}
	}
	r.releaseAll() // held but not accepted: late, or not in the commit
	clear(r.refused)

	p, err := json.Marshal(res)
	if err != nil {
		r.h.Release(res.Accepted)
		return 0, fmt.Errorf("reconfig: encode migration result: %w", err)
	}
	// Never after the deadline: the old process resumes the batch then.
	wd := deadline
	if late {
		wd = r.now().Add(nackWriteTimeout) // nothing accepted: harmless whenever it arrives
	}
	if err = w.writeBy(typeConnResult, flagOptional, p, wd); err != nil {
		if len(res.Accepted) > 0 {
			r.h.Release(res.Accepted)
		}
		return 0, fmt.Errorf("reconfig: send migration result: %w", err)
	}
	if len(res.Accepted) > 0 {
		r.h.Start(res.Accepted)
	}
	return len(res.Accepted), nil
}

// releaseAll lets go of every held offer (no commit will come for them).
func (r *receiver) releaseAll() {
	if len(r.held) == 0 {
		return
	}
	ids := make([]uint64, 0, len(r.held))
	for id := range r.held {
		ids = append(ids, id)
	}
	clear(r.held)
	r.h.Release(ids)
}
