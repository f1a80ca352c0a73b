package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func countRows(t testing.TB, s *SQLite) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM certificates`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// writerOf is the certificate writer of a store.
func writerOf(t testing.TB, s Store) *groupWriter {
	switch s := s.(type) {
	case *SQLite:
		return s.groupWriter
	case *Postgres:
		return s.groupWriter
	}
	t.Fatalf("no certificate writer in %T", s)
	return nil
}

// storedCount is the number of certificates a store holds, by its
// counts per issuer.
func storedCount(t testing.TB, s Store) int {
	t.Helper()
	counts, err := s.CountCertificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// One batch gives every row the answer it would get alone, including
// against rows of the same batch, in one transaction.
func TestGroupCommitBatchSemantics(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		w := writerOf(t, s)
		before := testCert(0)
		if err := s.PutCertificate(ctx, before); err != nil {
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()

		sameKey := testCert(12)
		sameKey.SPKIHash = testCert(11).SPKIHash
		sameSerial := testCert(13)
		sameSerial.Serial = testCert(10).Serial
		reusedOld := testCert(14)
		reusedOld.SPKIHash = before.SPKIHash
		// Names: holder A binds cam1; B is refused it in the same batch;
		// A's second certificate for it is fine; C takes it over with
		// the operator's approval.
		bind := func(i int, holder string) *Certificate {
			c := testCert(i)
			c.SANs = []string{"cam1.studio.example.test"}
			c.Holder, c.Bind = holder, &Binding{Lapsed: c.IssuedAt.Add(-time.Hour)}
			return c
		}
		takeOver := bind(23, "vendor C")
		takeOver.Bind.TakeOver, takeOver.Bind.Actor = map[string]string{"cam1.studio.example.test": "vendor A"}, "operator ada"

		cases := []struct {
			ctx  context.Context
			cert *Certificate
			want func(error) bool
			desc string
		}{
			{ctx, testCert(10), func(err error) bool { return err == nil }, "new"},
			{ctx, testCert(11), func(err error) bool { return err == nil }, "new"},
			{ctx, sameKey, func(err error) bool { return errors.Is(err, ErrKeyReused) }, "key of a row earlier in the batch"},
			{ctx, sameSerial, func(err error) bool { return errors.Is(err, ErrConflict) }, "serial of a row earlier in the batch"},
			{ctx, reusedOld, func(err error) bool { return errors.Is(err, ErrKeyReused) }, "key stored before the batch"},
			{cancelled, testCert(15), func(err error) bool { return errors.Is(err, context.Canceled) }, "caller gone"},
			{ctx, testCert(17), func(err error) bool { return err == nil }, "new, after the refusals"},
			{ctx, bind(20, "vendor A"), func(err error) bool { return err == nil }, "a name bound"},
			{ctx, bind(21, "vendor B"), func(err error) bool { var nb *NameBoundError; return errors.As(err, &nb) && nb.Holder == "vendor A" }, "a name bound earlier in the batch"},
			{ctx, bind(22, "vendor A"), func(err error) bool { return err == nil }, "the holder's own name again"},
			{ctx, takeOver, func(err error) bool { return err == nil }, "a name taken over"},
		}
		reqs := make([]*putRequest, len(cases))
		for i, c := range cases {
			reqs[i] = &putRequest{ctx: c.ctx, cert: c.cert, done: make(chan error, 1)}
		}
		batches := w.batches.Load()
		w.commitBatch(reqs)
		for i, c := range cases {
			if err := <-reqs[i].done; !c.want(err) {
				t.Errorf("row %d (%s): %v", i, c.desc, err)
			}
		}
		if got := w.batches.Load() - batches; got != 1 {
			t.Errorf("%d transactions, want 1", got)
		}
		if n := storedCount(t, s); n != 7 {
			t.Errorf("%d certificates, want 7 (the one before and six new)", n)
		}
		for _, i := range []int{10, 11, 17, 20, 22, 23} {
			if _, err := s.Certificate(ctx, testCert(i).Serial); err != nil {
				t.Errorf("certificate %d: %v", i, err)
			}
		}
		if _, err := s.Certificate(ctx, testCert(15).Serial); !errors.Is(err, ErrNotFound) {
			t.Errorf("the cancelled request was stored: %v", err)
		}
		b, err := s.NameBindings(ctx, BindingFilter{})
		if err != nil || len(b) != 1 || b[0].Holder != "vendor C" || b[0].Serial.Cmp(takeOver.Serial) != 0 {
			t.Errorf("bindings %+v %v, want cam1 held by vendor C", b, err)
		}
		audit, err := s.Audit(ctx, 10)
		if err != nil || len(audit) != 1 || audit[0].Action != "name_transferred" || audit[0].Actor != "operator ada" {
			t.Errorf("audit %+v %v, want the take-over", audit, err)
		}
	})
}

// A row that fails for a reason of its own (here a NOT NULL column) is
// refused alone: the batch is committed again a certificate at a time.
func TestGroupCommitBadRowAlone(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		notNull := testCert(16)
		notNull.SPKIHash = nil
		certs := []*Certificate{testCert(1), notNull, testCert(2)}
		reqs := make([]*putRequest, len(certs))
		for i, c := range certs {
			reqs[i] = &putRequest{ctx: ctx, cert: c, done: make(chan error, 1)}
		}
		writerOf(t, s).commitBatch(reqs)
		for i, r := range reqs {
			err := <-r.done
			if (i == 1) != (err != nil) || errors.Is(err, ErrKeyReused) || errors.Is(err, ErrConflict) {
				t.Errorf("row %d: %v", i, err)
			}
		}
		if n := storedCount(t, s); n != 2 {
			t.Errorf("%d certificates, want 2", n)
		}
	})
}

// holdWriter takes the database's write lock (BEGIN IMMEDIATE on the
// connection of the other writes, as another process could) until
// release is called: the certificate writer's BEGIN IMMEDIATE then waits
// (busy_timeout), and certificates pile up behind it.
func holdWriter(t *testing.T, s *SQLite) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Error(err)
			}
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Concurrent callers whose certificates land in the same batch, two of
// them with one key: one of those two is stored, the other is told
// ErrKeyReused, everyone else succeeds, all in one transaction.
func TestGroupCommitConcurrentDuplicateInOneBatch(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	release := holdWriter(t, s)

	// The first certificate reaches the writer, which then waits for the
	// connection; the others queue behind it.
	first := make(chan error, 1)
	go func() { first <- s.PutCertificate(ctx, testCert(100)) }()
	waitFor(t, "the writer to take the first certificate", func() bool { return s.accepted.Load() == 1 })

	const n = 9
	certs := make([]*Certificate, n)
	for i := range certs {
		certs[i] = testCert(i + 1)
	}
	certs[7].SPKIHash = certs[2].SPKIHash // two requests for one key
	certs[8].SPKIHash = testCert(100).SPKIHash
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range certs {
		wg.Go(func() { errs[i] = s.PutCertificate(ctx, certs[i]) })
	}
	waitFor(t, "every caller to queue", func() bool { return s.queued.Load() == n })
	time.Sleep(20 * time.Millisecond) // from the counter to the channel send
	batches := s.batches.Load()
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	for i, err := range errs {
		switch i {
		case 2, 7:
		case 8:
			if !errors.Is(err, ErrKeyReused) {
				t.Errorf("key of the previous batch: %v", err)
			}
		default:
			if err != nil {
				t.Errorf("certificate %d: %v", i+1, err)
			}
		}
	}
	ok2, ok7 := errs[2] == nil, errs[7] == nil
	if ok2 == ok7 || !(errors.Is(errs[2], ErrKeyReused) || errors.Is(errs[7], ErrKeyReused)) {
		t.Errorf("same key twice in a batch: %v and %v, want one stored and one ErrKeyReused", errs[2], errs[7])
	}
	if got := s.batches.Load() - batches; got != 2 {
		t.Errorf("%d transactions, want 2 (the first certificate, then the nine queued)", got)
	}
	if got := countRows(t, s); got != 1+7 {
		t.Errorf("%d rows, want 8", got)
	}
}

// A caller that gives up while queued is not stored; one that stays gets
// its certificate stored.
func TestGroupCommitCallerGivesUp(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() { first <- s.PutCertificate(ctx, testCert(1)) }()
	waitFor(t, "the writer to take the first certificate", func() bool { return s.accepted.Load() == 1 })

	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- s.PutCertificate(cctx, testCert(2)) }()
	waitFor(t, "the second caller to queue", func() bool { return s.queued.Load() == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Certificate(ctx, testCert(2).Serial); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a certificate whose caller gave up while queued was stored: %v", err)
	}
}

func TestPutCertificateAfterClose(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCertificate(context.Background(), testCert(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Many writers, many keys, some reused: one certificate per key whatever
// the batching.
func TestGroupCommitStress(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const writers, each = 16, 25
	var stored, reused atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				c := testCert(w*each + i)
				c.SPKIHash = testCert((w*each + i) / 2).SPKIHash // every key asked for twice
				switch err := s.PutCertificate(ctx, c); {
				case err == nil:
					stored.Add(1)
				case errors.Is(err, ErrKeyReused):
					reused.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if stored.Load() != writers*each/2 || reused.Load() != writers*each/2 {
		t.Fatalf("stored %d, reused %d; want %d each", stored.Load(), reused.Load(), writers*each/2)
	}
	if n := countRows(t, s); n != writers*each/2 {
		t.Fatalf("%d rows", n)
	}
	t.Logf("%d certificates in %d transactions", s.rows.Load(), s.batches.Load())
}

// The durability promise, end to end: a process storing certificates
// from many goroutines is killed (SIGKILL) while it works; every
// certificate it had acknowledged is in the database afterwards.
func TestGroupCommitKilledKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	if dir := os.Getenv("STORE_KILL_CHILD_DIR"); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGroupCommitKilledKeepsAcknowledged$")
	cmd.Env = append(os.Environ(), "STORE_KILL_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		serial, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(serial, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, n)
		if len(acked) == 300 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("the child acknowledged only %d certificates", len(acked))
	}
	s, err := OpenSQLite(context.Background(), filepath.Join(dir, "kill.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range acked {
		if _, err := s.Certificate(context.Background(), big.NewInt(n)); err != nil {
			t.Fatalf("acknowledged certificate %d lost: %v", n, err)
		}
	}
	t.Logf("%d acknowledged certificates all present after SIGKILL; %d rows in all", len(acked), countRows(t, s))
}

// killChild stores certificates from 16 goroutines until it is killed,
// printing each one acknowledged.
func killChild(dir string) {
	s, err := OpenSQLite(context.Background(), filepath.Join(dir, "kill.db"))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if err := s.PutCertificate(context.Background(), testCert(i)); err != nil {
					fmt.Println("error:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("ack %d\n", 1000+i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// BenchmarkPutCertificateParallel stores certificates from many
// goroutines at once, as concurrent enrollments do; each call is durable
// on return.
// BenchmarkPutCertificateParallel stores certificates from 8 goroutines
// per CPU, without and with their names bound to a holder (the
// appliance's default, ca.name_binding: strict), which adds a lookup and
// an upsert per name to the writer's transaction.
func BenchmarkPutCertificateParallel(b *testing.B) {
	for _, bind := range []bool{false, true} {
		name := "unbound"
		if bind {
			name = "bound"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := openTest(b)
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					c := testCert(i)
					c.DER = make([]byte, 600)
					if bind {
						c.SANs = []string{fmt.Sprintf("cam%d.studio.example.test", i)}
						c.Holder = fmt.Sprintf("manufacturer \"CN=Acme\" serialNumber \"%d\"", i)
						c.Bind = &Binding{Lapsed: c.IssuedAt.Add(-30 * 24 * time.Hour)}
					}
					if err := s.PutCertificate(ctx, c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(s.rows.Load())/float64(max(s.batches.Load(), 1)), "rows/commit")
		})
	}
}

// TestExpectGathers: certificates announced with Expect are waited for
// and committed with the one that started the batch; a withdrawn
// announcement ends the wait.
func TestExpectGathers(t *testing.T) {
	s, _ := openTest(t)
	s.window = time.Minute // only announcements end the wait here
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	doneA, doneB, doneC := s.Expect(), s.Expect(), s.Expect()
	batches, rows := s.CommitStats()
	results := make(chan error, 3)
	put := func(i int, done func()) {
		done()
		results <- s.PutCertificate(ctx, testCert(i))
	}
	go put(1, doneA)
	// The writer now holds certificate 1 and waits for B and C.
	time.Sleep(50 * time.Millisecond)
	go put(2, doneB)
	time.Sleep(50 * time.Millisecond)
	// C's signing fails: withdrawing it lets the batch commit.
	doneC()
	doneC() // a second call changes nothing
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	b, r := s.CommitStats()
	if b-batches != 1 || r-rows != 2 {
		t.Fatalf("%d transactions with %d certificates, want 1 with 2", b-batches, r-rows)
	}
	if n := s.coming.Load(); n != 0 {
		t.Fatalf("%d announcements left", n)
	}
	// Nothing announced: a lone certificate does not wait.
	if err := s.PutCertificate(ctx, testCert(3)); err != nil {
		t.Fatal(err)
	}
}

// TestBusyGathers: while the server says it is busy, a commit waits for
// more certificates even if none was announced.
func TestBusyGathers(t *testing.T) {
	s, _ := openTest(t)
	s.window = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy atomic.Bool
	busy.Store(true)
	s.SetBusy(busy.Load)
	batches, rows := s.CommitStats()
	results := make(chan error, 2)
	go func() { results <- s.PutCertificate(ctx, testCert(1)) }()
	time.Sleep(50 * time.Millisecond)
	go func() { results <- s.PutCertificate(ctx, testCert(2)) }()
	time.Sleep(50 * time.Millisecond)
	busy.Store(false)
	// The writer looks again when something arrives or an announcement
	// ends; the end of a (never made) announcement wakes it here.
	s.Expect()()
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if b, r := s.CommitStats(); b-batches != 1 || r-rows != 2 {
		t.Fatalf("%d transactions with %d certificates, want 1 with 2", b-batches, r-rows)
	}
	s.SetBusy(nil)
	if err := s.PutCertificate(ctx, testCert(3)); err != nil {
		t.Fatal(err)
	}
}

// A transaction left open on the writer's connection (a ROLLBACK that
// failed, say) does not stop the writer: the next batch ends it and
// commits.
func TestWriterRecoversFromOpenTransaction(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.begin.ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCertificate(ctx, testCert(1)); err != nil {
		t.Fatalf("with a transaction left open: %v", err)
	}
	if err := s.PutCertificate(ctx, testCert(2)); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// TestCommitLatency: every certificate transaction is timed once, and
// the histogram's buckets are cumulative and end at its count.
func TestCommitLatency(t *testing.T) {
	s, _ := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		if err := s.PutCertificate(ctx, testCert(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	commits, _ := s.CommitStats()
	buckets, n, sum := s.CommitLatency()
	if n != uint64(commits) || n == 0 || sum <= 0 {
		t.Fatalf("%d observations summing %vs for %d commits", n, sum, commits)
	}
	prev := uint64(0)
	for _, ub := range CommitBuckets {
		if buckets[ub] < prev {
			t.Fatalf("bucket %v: %d below the one before (%d)", ub, buckets[ub], prev)
		}
		prev = buckets[ub]
	}
	if prev > n {
		t.Fatalf("last bucket %d above the count %d", prev, n)
	}
	var l latency
	l.observe(700 * time.Microsecond) // in the 1 ms bucket, not the 0.5 ms one
	l.observe(10 * time.Second)       // past every bucket
	b, n, _ := l.snapshot()
	if b[0.0005] != 0 || b[0.001] != 1 || b[CommitBuckets[len(CommitBuckets)-1]] != 1 || n != 2 {
		t.Fatalf("buckets %v, count %d", b, n)
	}
}

// A batch that fails for want of the database fails whole, at once: it is
// not tried again a certificate at a time (each caller would wait for
// another attempt), and nothing is stored.
func TestPostgresBatchWithoutTheDatabase(t *testing.T) {
	p := openPostgres(t)
	reqs := []*putRequest{
		{ctx: context.Background(), cert: testCert(1), done: make(chan error, 1)},
		{ctx: context.Background(), cert: testCert(2), done: make(chan error, 1)},
	}
	p.pool.Close()
	errs, err := p.insertBatch(context.Background(), reqs)
	var re *rowError
	if err == nil || errors.As(err, &re) || errs != nil {
		t.Fatalf("insertBatch without the database: %v, %v; want one error for the batch", errs, err)
	}
}
