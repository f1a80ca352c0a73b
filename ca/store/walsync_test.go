package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Every certificate commit is followed by a sync of the database's own
// WAL, and the certificate connection really leaves the sync to us
// (synchronous=NORMAL) while the other connections keep FULL.
func TestCertificateCommitsSyncTheWAL(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := s.PutCertificate(ctx, testCert(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	commits, rows := s.CommitStats()
	syncs, _ := s.ws.counts()
	if rows != 40 || syncs != commits || commits == 0 {
		t.Fatalf("%d rows in %d commits with %d WAL syncs; want 40 rows and a sync per commit", rows, commits, syncs)
	}
	if st := s.WALSyncStats(); st.Syncs != syncs || st.Time <= 0 {
		t.Fatalf("WALSyncStats %+v after %d syncs", st, syncs)
	}
	walInfo, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	synced, err := s.ws.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(walInfo, synced) {
		t.Fatalf("the file synced is not %s-wal", path)
	}
	for _, c := range []struct {
		db interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}
		name string
		want int // 1 NORMAL, 2 FULL
	}{{s.wc, "certificate writer", 1}, {s.w, "writer", 2}, {s.r, "reader", 2}} {
		var got int
		if err := c.db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s connection: synchronous=%d, want %d", c.name, got, c.want)
		}
	}
}

// A sync that fails fails its batch: the callers get the error, not a
// certificate they would believe stored.
func TestWALSyncFailureFailsTheBatch(t *testing.T) {
	s, _ := openTest(t)
	s.ws.mu.Lock()
	s.ws.sync = func(*os.File, bool) error { return syscall.EIO }
	s.ws.mu.Unlock()
	err := s.PutCertificate(context.Background(), testCert(1))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("PutCertificate = %v, want the sync's EIO", err)
	}
	if _, rows := s.CommitStats(); rows != 0 {
		t.Fatalf("%d rows counted as stored", rows)
	}
}

// walSyncerOn returns a syncer for a database path in a temporary
// directory whose WAL holds content, and that path.
func walSyncerOn(t *testing.T, content string) (*walSyncer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(path+"-wal", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWALSyncer(path)
	t.Cleanup(func() { w.Close() })
	return w, path
}

// Syncs hold the P while the disk is quick on average; a slow average,
// or one stalled sync for rawSyncBackoff, sends them to the blocking path.
func TestWALSyncerHoldsThePOnlyWhileTheDiskIsQuick(t *testing.T) {
	w, _ := walSyncerOn(t, "frames")
	clock := time.Unix(1_800_000_000, 0)
	w.now = func() time.Time { return clock }
	var took time.Duration
	var held []bool
	w.sync = func(f *os.File, holdP bool) error {
		held = append(held, holdP)
		clock = clock.Add(took)
		return nil
	}
	syncs := func(n int, d time.Duration) []bool {
		t.Helper()
		held = nil
		took = d
		for range n {
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		return held
	}
	count := func(b []bool) (n int) {
		for _, v := range b {
			if v {
				n++
			}
		}
		return n
	}
	const quick = 300 * time.Microsecond
	if h := syncs(20, quick); count(h) != 20 {
		t.Fatalf("quick disk: %d of 20 syncs held the P", count(h))
	}
	if h := syncs(1, 5*time.Millisecond); count(h) != 1 {
		t.Fatal("one slow sync after quick ones did not hold the P")
	}
	if h := syncs(1, quick); count(h) != 1 {
		t.Fatal("the odd slow sync changed the path")
	}
	// A slow disk: the average climbs over rawSyncLimit and stays there.
	h := syncs(40, 5*time.Millisecond)
	if count(h[len(h)-20:]) != 0 {
		t.Fatalf("slow disk: the last 20 syncs held the P %d times", count(h[len(h)-20:]))
	}
	// Quick again: the average comes down and the P is held again.
	if h := syncs(40, quick); !h[len(h)-1] || h[0] {
		t.Fatalf("after the disk recovered: %v", h)
	}
	// A stall: blocking for rawSyncBackoff, quick or not.
	syncs(1, rawSyncStall+time.Millisecond)
	if h := syncs(40, quick); count(h) != 0 {
		t.Fatalf("after a stall, %d syncs held the P within the backoff", count(h))
	}
	clock = clock.Add(rawSyncBackoff)
	if h := syncs(1, quick); count(h) != 1 {
		t.Fatal("the backoff did not end")
	}
	if s, b := w.counts(); s != 20+1+1+40+40+1+40+1 || b == 0 {
		t.Fatalf("counts %d, %d", s, b)
	}
}

// A WAL removed and made again (SQLite deletes it when the last
// connection closes) is opened again, so the new file is the one synced;
// the real fdatasync works on both paths.
func TestWALSyncerFollowsANewWAL(t *testing.T) {
	w, path := walSyncerOn(t, "one")
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	first, _ := w.f.Stat()
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-wal", []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.blockedUntil = w.now().Add(time.Hour) // the blocking path this time
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	second, _ := w.f.Stat()
	now, _ := os.Stat(path + "-wal")
	if os.SameFile(first, second) || !os.SameFile(second, now) {
		t.Fatal("the syncer kept the removed WAL")
	}
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err == nil {
		t.Fatal("Sync without a WAL succeeded")
	}
}

// The sync counters are read without waiting for a sync in progress: a
// metrics scrape must not hang on a stalled disk.
func TestWALSyncStatsDuringASync(t *testing.T) {
	s, _ := openTest(t)
	entered, release := make(chan struct{}), make(chan struct{})
	s.ws.mu.Lock()
	s.ws.sync = func(*os.File, bool) error {
		close(entered)
		<-release
		return nil
	}
	s.ws.mu.Unlock()
	put := make(chan error, 1)
	go func() { put <- s.PutCertificate(context.Background(), testCert(1)) }()
	<-entered
	read := make(chan WALSyncStats, 1)
	go func() { read <- s.WALSyncStats() }()
	select {
	case st := <-read:
		if st.Syncs != 0 {
			t.Errorf("a sync still under way is counted: %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Error("WALSyncStats waited for the sync")
	}
	close(release)
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if st := s.WALSyncStats(); st.Syncs != 1 {
		t.Fatalf("after the sync: %+v", st)
	}
}
