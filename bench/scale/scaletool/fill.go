package main

import (
	"bytes"
	"context"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nmos-certs/nmos-certs/bench/internal/benchutil"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// FillReport is what fill prints.
type FillReport struct {
	Rows       int     `json:"rows"`
	Mode       string  `json:"mode"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_s"`
	DERBytes   int     `json:"der_bytes"`
	DBBytes    int64   `json:"db_bytes"`
	Sampled    int     `json:"sampled"`
}

// fill adds n synthetic certificate records to the store.
//
// With -mode put it goes through store.PutCertificate, the appliance's
// own write path, from many goroutines at once so that its group commit
// makes its largest transactions (256 certificates, one fsync each); that
// takes about two minutes for a million on a small machine. With -mode
// bulk (the default) it first opens the database with store.OpenSQLite,
// which creates or checks the schema, and then inserts the same records
// with the store's INSERT statement on a connection of its own, in
// transactions of -batch records with synchronous=OFF and a large page
// cache: the resulting b-trees are the same (rowids in insertion order,
// both unique indexes grown by random-key inserts), only reached faster.
// Either way the sampled records are read back through the store at the
// end, as a check that it understands them.
//
// Every record has a random 159-bit serial (as the CA makes them) and a
// random key hash, so both unique indexes grow by random-key inserts as
// they do in service. The DER column holds the same leaf certificate in
// every record (made here with a throwaway key, shaped like the
// appliance's leaves): its bytes do not matter to the store, only its
// size.
func fill(args []string) (any, error) {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	db := fs.String("db", "", "the appliance's SQLite database (data_dir/nmos-certs.db)")
	dsnFile := fs.String("dsn-file", "", "fill a PostgreSQL store instead: the file holding its DSN (-mode put)")
	n := fs.Int("n", 1000, "records to add")
	issuer := fs.String("issuer", "ecdsa-int-1", "issuer generation ID of the records")
	domain := fs.String("domain", "studio.example.test", "DNS domain of the names")
	sample := fs.String("sample", "", "write the serials of about -sample-n records, spread over the fill, to this file")
	sampleN := fs.Int("sample-n", 2000, "serials to sample")
	mode := fs.String("mode", "bulk", "bulk (own transactions of -batch records) or put (store.PutCertificate)")
	workers := fs.Int("workers", 1024, "concurrent PutCertificate callers with -mode put")
	batch := fs.Int("batch", 250000, "records per transaction with -mode bulk")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the fill to `FILE`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if (*db == "") == (*dsnFile == "") || *n < 1 || *workers < 1 || *batch < 1 {
		return nil, errors.New("need -db or -dsn-file, -n >= 1, -workers >= 1 and -batch >= 1")
	}
	if *mode != "bulk" && *mode != "put" {
		return nil, fmt.Errorf("-mode %q: want bulk or put", *mode)
	}
	if *dsnFile != "" && *mode != "put" {
		return nil, errors.New("a PostgreSQL store fills with -mode put")
	}
	der, err := templateDER(*domain)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	open := func() (store.Store, error) {
		if *dsnFile != "" {
			return openPostgres(ctx, *dsnFile)
		}
		return store.OpenSQLite(ctx, *db)
	}
	st, err := open()
	if err != nil {
		return nil, err
	}

	f := &filler{
		n: *n, issuer: *issuer, domain: *domain, der: der,
		now:    time.Now().UTC().Truncate(time.Second),
		stride: max(1, *n/max(1, *sampleN)),
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				d := f.done.Load()
				fmt.Fprintf(os.Stderr, "fill: %d of %d records, %.0f/s\n", d, *n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	if *mode == "put" {
		err = f.put(ctx, st, *workers)
		err = errors.Join(err, st.Close())
	} else {
		if err = st.Close(); err == nil {
			err = f.bulk(ctx, *db, *batch)
		}
	}
	close(stop)
	elapsed := time.Since(start)
	if err != nil {
		return nil, err
	}
	if *sample != "" {
		if err := os.WriteFile(*sample, []byte(strings.Join(f.sampled, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if st, err = open(); err != nil {
		return nil, err
	}
	if err := f.check(ctx, st); err != nil {
		return nil, err
	}
	var size int64
	if *db != "" {
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(*db + suffix); err == nil {
				size += fi.Size()
			}
		}
	} else if size, err = pgSize(ctx, *dsnFile); err != nil {
		return nil, err
	}
	return FillReport{
		Rows: *n, Mode: *mode, Seconds: round(elapsed.Seconds(), 2), RowsPerSec: round(float64(*n)/elapsed.Seconds(), 0),
		DERBytes: len(der), DBBytes: size, Sampled: len(f.sampled),
	}, nil
}

// filler makes the records of one fill.
type filler struct {
	n              int
	issuer, domain string
	der            []byte
	now            time.Time
	stride         int // every stride-th record is sampled

	done    atomic.Int64
	mu      sync.Mutex
	sampled []string // hexadecimal serials
	// certs keeps the sampled records, to check them afterwards.
	certs []*store.Certificate
}

func (f *filler) record(rng *rand.ChaCha8, i int) *store.Certificate {
	c := synthetic(rng, i, f.issuer, f.domain, f.now, f.der)
	if i%f.stride == 0 {
		f.mu.Lock()
		f.sampled = append(f.sampled, store.SerialKey(c.Serial))
		if len(f.certs) < 20 {
			f.certs = append(f.certs, c)
		}
		f.mu.Unlock()
	}
	return c
}

func newRNG() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}

// put stores the records with PutCertificate from many goroutines.
func (f *filler) put(ctx context.Context, st store.Store, workers int) error {
	var (
		next  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			rng := newRNG()
			for {
				i := int(next.Add(1) - 1)
				if i >= f.n {
					return
				}
				if err := st.PutCertificate(ctx, f.record(rng, i)); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("record %d: %w", i, err)
					}
					errMu.Unlock()
					next.Store(int64(f.n)) // stop everyone
					return
				}
				f.done.Add(1)
			}
		})
	}
	wg.Wait()
	return first
}

// insertSQL is the store's certificate INSERT (ca/store), column for
// column; a change of the schema makes it fail rather than fill wrongly.
const insertSQL = `INSERT INTO certificates
	(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// namesSQL fills the names index the store's writer fills with each
// certificate (lower-case names, the certificate's rowid).
const namesSQL = `INSERT OR IGNORE INTO certificate_names (name, cert) VALUES (?, last_insert_rowid())`

// bulk inserts the records on a connection of its own, batch records a
// transaction, with the values written as the store writes them. The
// database is taken exclusively and without a journal while it fills
// (a failed fill leaves it unusable; run.sh starts over), and set back to
// WAL, the store's journal mode, at the end. The records are made on
// another goroutine than the one inserting them.
func (f *filler) bulk(ctx context.Context, path string, batch int) error {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "locking_mode(EXCLUSIVE)", "journal_mode(OFF)", "synchronous(OFF)", "cache_size(-1048576)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	recs := make(chan []*store.Certificate, 4)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(recs)
		rng := newRNG()
		for i := 0; i < f.n; {
			part := make([]*store.Certificate, 0, 1024)
			for end := min(i+1024, f.n); i < end; i++ {
				part = append(part, f.record(rng, i))
			}
			select {
			case recs <- part:
			case <-quit:
				return
			}
		}
	}()

	var tx *sql.Tx
	var ins, names *sql.Stmt
	inTx := 0
	commit := func() error {
		ins.Close()
		names.Close()
		err := tx.Commit()
		tx, ins, names, inTx = nil, nil, nil, 0
		return err
	}
	for part := range recs {
		for _, c := range part {
			if tx == nil {
				if tx, err = conn.BeginTx(ctx, nil); err != nil {
					return err
				}
				if ins, err = tx.PrepareContext(ctx, insertSQL); err != nil {
					tx.Rollback()
					return err
				}
				if names, err = tx.PrepareContext(ctx, namesSQL); err != nil {
					tx.Rollback()
					return err
				}
			}
			if _, err := ins.ExecContext(ctx, store.SerialKey(c.Serial), c.IssuerID, c.Subject, strings.Join(c.SANs, "\n"), c.KeyType,
				c.SPKIHash, c.NotBefore.Unix(), c.NotAfter.Unix(), c.IssuedAt.Unix(), c.Identity, c.Profile, c.DER); err != nil {
				tx.Rollback()
				return fmt.Errorf("record %s: %w", store.SerialKey(c.Serial), err)
			}
			for _, n := range c.SANs {
				if _, err := names.ExecContext(ctx, strings.ToLower(n)); err != nil {
					tx.Rollback()
					return fmt.Errorf("names of %s: %w", store.SerialKey(c.Serial), err)
				}
			}
			f.done.Add(1)
			if inTx++; inTx == batch {
				if err := commit(); err != nil {
					return err
				}
			}
		}
	}
	if tx != nil {
		if err := commit(); err != nil {
			return err
		}
	}
	var mode string
	if err := conn.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode %q after the fill, want wal", mode)
	}
	if err := conn.Close(); err != nil {
		return err
	}
	return db.Close()
}

// check reads some sampled records back through the store, opened anew.
func (f *filler) check(ctx context.Context, st store.Store) error {
	defer st.Close()
	for _, want := range f.certs {
		got, err := st.Certificate(ctx, want.Serial)
		if err != nil {
			return fmt.Errorf("read back %s: %w", store.SerialKey(want.Serial), err)
		}
		if got.IssuerID != want.IssuerID || got.Subject != want.Subject || !bytes.Equal(got.SPKIHash, want.SPKIHash) ||
			!bytes.Equal(got.DER, want.DER) || !got.NotAfter.Equal(want.NotAfter) || got.Revoked {
			return fmt.Errorf("read back %s: the store returns a different record", store.SerialKey(want.Serial))
		}
		if _, err := st.CertificateStatus(ctx, want.IssuerID, want.Serial); err != nil {
			return fmt.Errorf("status of %s: %w", store.SerialKey(want.Serial), err)
		}
		page, err := st.SearchCertificates(ctx, store.CertificateQuery{Name: want.SANs[0], Limit: 5})
		if err != nil || len(page.Certificates) != 1 || page.Certificates[0].Serial.Cmp(want.Serial) != 0 {
			return fmt.Errorf("search by the name of %s: %v", store.SerialKey(want.Serial), err)
		}
	}
	return st.Close()
}

// synthetic is record i: what the authority stores for a device's leaf.
func synthetic(rng *rand.ChaCha8, i int, issuer, domain string, now time.Time, der []byte) *store.Certificate {
	var b [20]byte
	rng.Read(b[:])
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1
	}
	spki := make([]byte, 32)
	rng.Read(spki)
	name := fmt.Sprintf("node-%07d.%s", i, domain)
	issued := now.Add(-time.Duration(i%(90*24*60)) * time.Minute)
	return &store.Certificate{
		Serial:    new(big.Int).SetBytes(b[:]),
		IssuerID:  issuer,
		Subject:   "CN=" + name,
		SANs:      []string{name},
		KeyType:   "ECDSA P-256",
		SPKIHash:  spki,
		NotBefore: issued.Add(-5 * time.Minute),
		NotAfter:  issued.Add(90 * 24 * time.Hour),
		IssuedAt:  issued,
		Identity: fmt.Sprintf("manufacturer certificate %q (issuer %q, serial %x, SHA-256 %x) from 192.0.2.%d:%d",
			"CN=device-"+fmt.Sprint(i)+",O=Manufacturer", "CN=Manufacturer Device CA,O=Manufacturer", b[:8], spki, i%250+1, 32768+i%28000),
		Profile: "leaf",
		DER:     der,
	}
}

// templateDER is a leaf certificate shaped like the appliance's (ECDSA
// P-256 key and issuer, one DNS name, AIA with OCSP and caIssuers, a CRL
// distribution point), signed by a throwaway key.
func templateDER(domain string) ([]byte, error) {
	now := time.Now()
	ca, caKey, err := benchutil.NewCert(elliptic.P256(), &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nmos-certs ECDSA Intermediate 1", Organization: []string{"nmos-certs"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		return nil, err
	}
	serial, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, err
	}
	base := "http://est." + domain + ":8080"
	name := "node-0000000." + domain
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		OCSPServer:            []string{base + "/ocsp"},
		IssuingCertificateURL: []string{base + "/ca/ecdsa-int-1.crt"},
		CRLDistributionPoints: []string{base + "/crl/ecdsa-int-1.crl"},
	}
	leaf, _, err := benchutil.NewCert(elliptic.P256(), tmpl, ca, caKey)
	if err != nil {
		return nil, err
	}
	return leaf.Raw, nil
}
