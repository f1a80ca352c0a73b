package store

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The certificate writer's connection runs with synchronous=NORMAL, under
// which SQLite does not sync the WAL at COMMIT, and walSyncer syncs it
// instead, after COMMIT and before any caller of the batch is answered.
// The guarantee is that of synchronous=FULL: every frame of an answered
// batch, its commit frame included, is on disk; SQLite still syncs the
// WAL and the database around every checkpoint, and recovery drops a
// transaction whose commit frame did not reach the disk. The other write
// paths (revocations, pending requests, CA generations) keep FULL on
// their own connection.
//
// Doing the sync here rather than in SQLite changes how it is made, not
// what reaches the disk: fdatasync(2) instead of fsync(2) (the WAL's
// timestamps are not needed to read it back), and, while the disk answers
// quickly, without handing the Go runtime's P to another thread. A system
// call that blocks longer than the scheduler's 20 us tick makes the Go
// runtime hand its P to another thread, waking one, and keeps the
// runtime's monitor thread polling every 20 us; on a virtual machine each
// of those wake-ups is an exit to the hypervisor. At 4 EST clients on two
// CPUs that cost 0.1 to 0.3 ms of server CPU per enrollment (interleaved
// runs of both builds; bench/est/README.md has the figures). Holding the P is only cheap while the sync is
// short, and it delays a stop-the-world pause of the garbage collector
// until the sync returns. So the P is held only while the syncs' moving
// average stays under rawSyncLimit, and a single sync longer than
// rawSyncStall (a stalling disk) puts the syncer on the ordinary blocking
// path for rawSyncBackoff whatever the average.
type walSyncer struct {
	path string // the database's WAL: database path + "-wal"

	mu           sync.Mutex
	f            *os.File
	now          func() time.Time
	avg          time.Duration // moving average of the syncs' wall time
	blockedUntil time.Time     // the ordinary blocking path until then
	sync         func(f *os.File, holdP bool) error

	// Read without mu, so that a metrics scrape never waits for the disk.
	syncs    atomic.Int64 // syncs made
	blocking atomic.Int64 // of which on the blocking path
	spentNS  atomic.Int64 // their wall time
}

const (
	// rawSyncLimit is the moving average of the syncs' wall time under
	// which the P is held: a few times a healthy SSD's or virtual disk's
	// fdatasync (go test -bench Fsync ./bench/est/floor/), which has the
	// odd slow one here and there; a spinning disk's syncs take longer
	// and are made on the blocking path.
	rawSyncLimit = 2 * time.Millisecond
	// rawSyncStall is a single sync long enough to call the disk stalled.
	rawSyncStall = 50 * time.Millisecond
	// rawSyncBackoff is how long a stall keeps the syncer on the
	// blocking path: a disk that stalled once may stall again.
	rawSyncBackoff = time.Minute
)

func newWALSyncer(dbPath string) *walSyncer {
	return &walSyncer{path: dbPath + "-wal", now: time.Now, sync: fdatasync}
}

// Sync makes the WAL's content durable. It is called by the certificate
// writer only, after a COMMIT, so that the WAL exists.
func (w *walSyncer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.open(); err != nil {
		return err
	}
	start := w.now()
	holdP := w.avg <= rawSyncLimit && !start.Before(w.blockedUntil)
	err := w.sync(w.f, holdP)
	w.syncs.Add(1)
	if !holdP {
		w.blocking.Add(1)
	}
	end := w.now()
	took := end.Sub(start)
	w.spentNS.Add(int64(took))
	w.avg += (took - w.avg) / 8
	if took > rawSyncStall {
		w.blockedUntil = end.Add(rawSyncBackoff)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", w.path, err)
	}
	return nil
}

// open opens the WAL, or opens it again if the file open has been
// removed: SQLite deletes the WAL when the last connection closes, and a
// new one is a new file.
func (w *walSyncer) open() error {
	if w.f != nil {
		if !removed(w.f) {
			return nil
		}
		w.f.Close()
		w.f = nil
	}
	f, err := os.OpenFile(w.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open the WAL to sync it: %w", err)
	}
	w.f = f
	return nil
}

// Close closes the WAL file.
func (w *walSyncer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// counts returns the syncs made and how many of them took the blocking
// path.
func (w *walSyncer) counts() (syncs, blocking int64) {
	return w.syncs.Load(), w.blocking.Load()
}

// WALSyncStats describes the syncs of the WAL made after certificate
// commits: how many, how many of them on the blocking path (a slow or
// stalling disk), and the wall time they took in all.
type WALSyncStats struct {
	Syncs, Blocking int64
	Time            time.Duration
}

// WALSyncStats returns the syncs made so far (see walSyncer).
func (s *SQLite) WALSyncStats() WALSyncStats {
	syncs, blocking := s.ws.counts()
	return WALSyncStats{Syncs: syncs, Blocking: blocking, Time: time.Duration(s.ws.spentNS.Load())}
}
