package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// groupWriter is the certificate writer of both stores: one goroutine
// owns certificate inserts and commits every certificate handed to it
// while the previous commit was being made in one transaction, so that
// concurrent enrollments share one commit (and its sync) instead of
// queueing for one each. The store gives it insert, which stores a batch
// in one transaction and says how each row went.
type groupWriter struct {
	// insert stores reqs in one transaction and returns each row's
	// outcome, or an error for the whole batch, in which case nothing
	// was committed: a *rowError when a row failed in a way that may be
	// its own (the batch is then tried again one certificate at a time).
	insert func(ctx context.Context, reqs []*putRequest) ([]error, error)

	puts      chan *putRequest // to the group-commit writer; unbuffered
	closing   chan struct{}    // closed by stop: the writer stops
	writeDone chan struct{}    // closed when the writer has stopped
	closeOnce sync.Once
	started   bool

	queued    atomic.Int64  // PutCertificate callers waiting to hand over
	accepted  atomic.Int64  // certificates the writer has taken
	coming    atomic.Int64  // certificates announced by Expect, not handed over
	withdrawn chan struct{} // wakes the writer when an announcement ends
	window    time.Duration // commitWindow; tests lengthen it
	busy      atomic.Pointer[func() bool]
	batches   atomic.Int64 // transactions committed by the writer
	rows      atomic.Int64 // certificates they stored
	// commitLatency times those transactions, from the start of the
	// batch's transaction to its commit made durable.
	commitLatency latency
}

func newGroupWriter(insert func(ctx context.Context, reqs []*putRequest) ([]error, error)) *groupWriter {
	return &groupWriter{insert: insert, puts: make(chan *putRequest), closing: make(chan struct{}), writeDone: make(chan struct{}), withdrawn: make(chan struct{}, 1), window: commitWindow}
}

// start starts the writer goroutine.
func (s *groupWriter) start() {
	s.started = true
	go s.writeCertificates()
}

// stop stops the writer, after the batch it is committing; PutCertificate
// calls made after it fail with ErrClosed.
func (s *groupWriter) stop() {
	s.closeOnce.Do(func() { close(s.closing) })
	if s.started {
		<-s.writeDone
	}
}

// CommitLatency returns the histogram of the certificate writer's
// transactions, from their start to the commit made durable: the time a
// certificate waits to be durable once signed.
func (s *groupWriter) CommitLatency() (buckets map[float64]uint64, count uint64, sum float64) {
	return s.commitLatency.snapshot()
}

// ErrClosed is returned by PutCertificate once the store is closed.
var ErrClosed = errors.New("store closed")

// commitWindow bounds how long the writer waits for more certificates
// before it commits: certificates announced (Expect) but not handed over
// yet, or any while the server says it is busy (SetBusy). A commit costs
// several times the CPU of an INSERT, most of it the fsync
// (go test -bench Fsync ./bench/est/floor/ for the disk's part), so a
// commit shared by several certificates costs each a fraction of it. At
// 16 EST clients on two CPUs (interleaved estload runs of builds with
// and without the wait, as bench/est/run.sh with BASELINE_BIN does), 2 ms took
// the batches from about 2 to about 5 certificates (the ratio of the
// nmos_certs_store_* counters) and the server's CPU per enrollment from
// about 1.45 to 1.2 ms; 5 ms made batches of 7 but no faster
// enrollments. Nothing announced and not busy: a lone certificate is
// committed at once.
const commitWindow = 2 * time.Millisecond

// SetBusy gives the writer a way to tell that the server is busy with
// requests that will probably bring certificates (an EST server with
// many connections open, say). While it is, a commit waits up to
// commitWindow for more certificates even if none was announced yet:
// on a machine whose CPUs are all taken, the other requests use the
// time, and a commit shared by several certificates costs each of them
// a fraction of the fsync. Requests still in their TLS handshake, which
// Expect cannot see, are what this is for. nil turns it off.
func (s *groupWriter) SetBusy(busy func() bool) {
	if busy == nil {
		s.busy.Store(nil)
		return
	}
	s.busy.Store(&busy)
}

func (s *groupWriter) isBusy() bool {
	if f := s.busy.Load(); f != nil {
		return (*f)()
	}
	return false
}

// Expect announces a certificate that is being signed and will be given
// to PutCertificate shortly; done withdraws the announcement, and must be
// called once, before PutCertificate (or instead of it, when signing
// fails). See commitWindow.
func (s *groupWriter) Expect() (done func()) {
	s.coming.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.coming.Add(-1)
			select {
			case s.withdrawn <- struct{}{}:
			default:
			}
		})
	}
}

// maxBatch bounds the certificates committed in one transaction.
const maxBatch = 256

// putRequest is one PutCertificate call waiting for its batch to commit.
type putRequest struct {
	ctx  context.Context
	cert *Certificate
	done chan error // buffered: the writer never waits for the caller
}

// PutCertificate implements Store by group commit.
//
// The caller hands its certificate to the writer goroutine and waits.
// The writer takes one certificate, then every other one already waiting,
// and commits them in one transaction (on SQLite: BEGIN IMMEDIATE, one
// INSERT per certificate, COMMIT; on PostgreSQL see
// Postgres.insertBatch). Each caller gets its own answer, and only once the
// COMMIT has returned: nil means the row is on disk. A batch is whatever
// arrived while the previous commit was syncing, plus the certificates
// announced with Expect that arrive within commitWindow; with nothing
// announced, a lone certificate is committed at once.
//
// Per-row semantics inside a batch are those of separate calls. A
// constraint violation (the UNIQUE key hash, the serial) makes SQLite
// abort that one INSERT statement and undo its changes, while the rows
// inserted before it stay in the still-open transaction (SQLite's
// default ABORT conflict resolution): that caller gets ErrKeyReused (or
// ErrConflict for a serial) and the others go on. The key check runs
// inside the transaction, so it sees the rows of the same batch: of two
// certificates for one key in one batch, the first is stored and the
// second is ErrKeyReused, exactly as if they had come one after the
// other. Any other INSERT error abandons the batch (ROLLBACK) and its
// certificates are committed again one per transaction, so that one bad
// row cannot fail its neighbours; a failed BEGIN or COMMIT fails the
// whole batch, none of which was stored.
//
// Crash consistency: the WAL, commit frame included, is synced after
// COMMIT returns and before any caller is answered (walSyncer, with the
// guarantee of synchronous=FULL), and a transaction
// whose commit frame did not reach the disk is discarded whole on
// recovery. A crash therefore keeps a batch entirely or drops it
// entirely, and a dropped batch is one whose callers had not been
// answered yet: no caller was told nil for it, so no certificate was
// handed out. A certificate returned by the authority is always on disk.
//
// If ctx ends while the certificate waits, PutCertificate returns
// ctx.Err(); a batch already committing may still store it, which only
// records a certificate nobody received, never the reverse.
func (s *groupWriter) PutCertificate(ctx context.Context, c *Certificate) error {
	req := &putRequest{ctx: ctx, cert: c, done: make(chan error, 1)}
	s.queued.Add(1)
	select {
	case s.puts <- req:
		s.queued.Add(-1)
	case <-s.closing:
		s.queued.Add(-1)
		return fmt.Errorf("store certificate: %w", ErrClosed)
	case <-ctx.Done():
		s.queued.Add(-1)
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeCertificates is the group-commit writer (see PutCertificate).
func (s *groupWriter) writeCertificates() {
	defer close(s.writeDone)
	batch := make([]*putRequest, 0, maxBatch)
	for {
		select {
		case r := <-s.puts:
			batch = append(batch[:0], r)
		case <-s.closing:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.puts:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if len(batch) < maxBatch && (s.coming.Load() > 0 || s.isBusy()) {
			s.gather(&batch)
		}
		s.accepted.Add(int64(len(batch)))
		s.commitBatch(batch)
		clear(batch)
	}
}

// gather adds to batch the certificates announced with Expect, and while
// the server is busy (SetBusy) any certificate, as they are handed over,
// until none is announced and the server is not busy any more, the batch
// is full or commitWindow has passed.
func (s *groupWriter) gather(batch *[]*putRequest) {
	t := time.NewTimer(s.window)
	defer t.Stop()
	for len(*batch) < maxBatch && (s.coming.Load() > 0 || s.isBusy()) {
		select {
		case r := <-s.puts:
			*batch = append(*batch, r)
		case <-s.withdrawn:
		case <-t.C:
			return
		}
	}
	// Those handed over meanwhile by callers that had announced
	// themselves come along too.
	for len(*batch) < maxBatch {
		select {
		case r := <-s.puts:
			*batch = append(*batch, r)
		default:
			return
		}
	}
}

// commitBatch stores the certificates of batch in one transaction and
// answers every request.
func (s *groupWriter) commitBatch(batch []*putRequest) {
	live := make([]*putRequest, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err // gone before its turn: not stored
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// The batch belongs to no single caller: one caller going away must
	// not roll back the others.
	start := time.Now()
	errs, err := s.insert(context.Background(), live)
	if err == nil {
		stored := 0
		for _, e := range errs {
			if e == nil {
				stored++
			}
		}
		if stored > 0 {
			s.commitLatency.observe(time.Since(start))
			s.batches.Add(1)
			s.rows.Add(int64(stored))
		}
	}
	var rowErr *rowError
	if errors.As(err, &rowErr) && len(live) > 1 {
		// One row failed in a way that may be its own: commit each
		// certificate alone so that the others are not refused for it.
		for _, r := range live {
			s.commitBatch([]*putRequest{r})
		}
		return
	}
	for i, r := range live {
		if err != nil {
			r.done <- fmt.Errorf("store certificate: %w", err)
		} else {
			r.done <- errs[i]
		}
	}
}

// CommitStats returns how many transactions the certificate writer has
// committed and how many certificates they stored.
func (s *groupWriter) CommitStats() (commits, rows int64) {
	return s.batches.Load(), s.rows.Load()
}
