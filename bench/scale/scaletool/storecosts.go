package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the driver the store uses, for dbstat

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// StoreReport is what store prints.
type StoreReport struct {
	// Certificates is the store's count at the end (with -count).
	Certificates int `json:"certificates,omitempty"`
	// Status is store.CertificateStatus (the OCSP responder's lookup)
	// for each sampled serial, in a process whose SQLite connections
	// start with empty page caches (the OS page cache is warm);
	// StatusAgain is the same serials a second time.
	Status      Phase `json:"status"`
	StatusAgain Phase `json:"status_again"`
	NotFound    int   `json:"status_not_found"`
	// Put is store.PutCertificate from one caller, so that every
	// certificate is its own transaction and fsync: what one enrollment
	// waits for when the appliance is otherwise idle.
	Put Phase `json:"put"`
	// Burst is store.PutCertificate from BurstClients callers at once,
	// so that the group commit puts several certificates in each
	// transaction, as under an enrollment load.
	Burst        Phase `json:"burst"`
	BurstClients int   `json:"burst_clients"`
	// CountMS is store.CountCertificates, which the operator UI's status
	// call makes (every 10 s while the UI is open).
	CountMS float64 `json:"count_ms"`
	// BTrees describes the certificates table and its indexes.
	BTrees   []BTree `json:"btrees,omitempty"`
	DBPages  int64   `json:"db_pages"`
	PageSize int64   `json:"page_size"`
}

// Phase is one series of store operations: latency, rate, and per
// operation this process's CPU time and read and write system calls
// (see ioCounters).
type Phase struct {
	Latency    Percentiles `json:"ms"`
	PerSec     float64     `json:"per_s"`
	CPUMicros  float64     `json:"cpu_us"`
	ReadBytes  float64     `json:"read_bytes"`
	ReadCalls  float64     `json:"read_calls"`
	WriteBytes float64     `json:"write_bytes"`
	WriteCalls float64     `json:"write_calls"`
}

// measure runs n operations from clients goroutines (op(i) for i in
// [0, n)) and describes them.
func measure(n, clients int, op func(i int) error) (Phase, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, clients)
	io0, err := procIO("self")
	if err != nil {
		return Phase{}, err
	}
	cpu0 := selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for i := w; i < n; i += clients {
				t := time.Now()
				if err := op(i); err != nil {
					errs[w] = err
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	cpu := selfCPU() - cpu0
	io1, err := procIO("self")
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		return Phase{}, err
	}
	p := Phase{
		Latency:   percentiles(lat),
		PerSec:    round(float64(n)/took.Seconds(), 0),
		CPUMicros: round(float64(cpu.Microseconds())/float64(n), 1),
	}
	p.ReadBytes, p.WriteBytes, p.ReadCalls, p.WriteCalls = io1.per(io0, n)
	return p, nil
}

// BTree is one b-tree of the database, from SQLite's dbstat table.
type BTree struct {
	Name  string `json:"name"`
	Pages int64  `json:"pages"`
	Depth int    `json:"depth"`
}

// storeCosts measures, directly on the store (the appliance stopped),
// the operations whose cost could depend on how many certificates it
// holds.
func storeCosts(args []string) (any, error) {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	db := fs.String("db", "", "the appliance's SQLite database")
	issuer := fs.String("issuer", "ecdsa-int-1", "issuer generation ID of the serials")
	serialsFile := fs.String("serials", "", "file of hexadecimal serials in the store")
	nPuts := fs.Int("puts", 200, "certificates to add one at a time")
	burst := fs.Int("burst", 2000, "certificates to add from -burst-clients callers at once")
	burstClients := fs.Int("burst-clients", 16, "concurrent callers for -burst")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the -burst inserts to `FILE`")
	count := fs.Bool("count", true, "time CountCertificates (last: it reads the whole table)")
	btree := fs.Bool("btree", true, "report the b-trees' page counts and depths (reads the whole table)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *db == "" || *serialsFile == "" {
		return nil, errors.New("need -db and -serials")
	}
	list, err := readSerials(*serialsFile)
	if err != nil {
		return nil, err
	}
	nums, err := parseSerials(list)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, *db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var rep StoreReport
	var notFound atomic.Int64
	status := func(i int) error {
		_, err := st.CertificateStatus(ctx, *issuer, nums[i])
		if errors.Is(err, store.ErrNotFound) {
			notFound.Add(1)
			return nil
		}
		return err
	}
	if rep.Status, err = measure(len(nums), 1, status); err != nil {
		return nil, err
	}
	if rep.StatusAgain, err = measure(len(nums), 1, status); err != nil {
		return nil, err
	}
	rep.NotFound = int(notFound.Load())

	der, err := templateDER("studio.example.test")
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	next := 9_000_000 // record numbers of the names, after any fill's
	// puts stores n new records from clients callers.
	puts := func(n, clients int) (Phase, error) {
		first := next
		next += n
		rngs := make(chan *rand.ChaCha8, clients)
		for range clients {
			rngs <- newRNG()
		}
		return measure(n, clients, func(i int) error {
			rng := <-rngs
			c := synthetic(rng, first+i, *issuer, "studio.example.test", now, der)
			rngs <- rng
			return st.PutCertificate(ctx, c)
		})
	}
	if *nPuts > 0 {
		if rep.Put, err = puts(*nPuts, 1); err != nil {
			return nil, err
		}
	}
	if *burst > 0 && *burstClients > 0 {
		stopProfile := func() {}
		if *cpuProfile != "" {
			if stopProfile, err = startCPUProfile(*cpuProfile); err != nil {
				return nil, err
			}
		}
		rep.Burst, err = puts(*burst, *burstClients)
		stopProfile()
		if err != nil {
			return nil, err
		}
		rep.BurstClients = *burstClients
	}

	if *count {
		start := time.Now()
		counts, err := st.CountCertificates(ctx)
		if err != nil {
			return nil, err
		}
		rep.CountMS = round(ms(time.Since(start)), 1)
		for _, n := range counts {
			rep.Certificates += n
		}
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	if *btree {
		if err := btrees(ctx, *db, &rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// btrees reads the shape of the certificates table and its indexes from
// SQLite's dbstat virtual table: pages, and depth (levels from the root
// page to the leaves, which is what a lookup descends).
func btrees(ctx context.Context, path string, rep *StoreReport) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&rep.DBPages); err != nil {
		return err
	}
	if err := db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&rep.PageSize); err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE tbl_name = 'certificates' AND type IN ('table', 'index') ORDER BY type DESC, name`)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		// A page's path is "/" for the root, "/000/" for its first
		// child and so on; overflow pages ("/000+000001") are not levels.
		var b BTree
		b.Name = n
		err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(max(length(path) - length(replace(path, '/', ''))), 0)
			FROM dbstat WHERE name = ? AND path NOT LIKE '%+%'`, n).Scan(&b.Pages, &b.Depth)
		if err != nil {
			return fmt.Errorf("dbstat %s: %w", n, err)
		}
		rep.BTrees = append(rep.BTrees, b)
	}
	return nil
}
