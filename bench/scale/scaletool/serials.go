package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// SerialsReport is what serials prints.
type SerialsReport struct {
	Serials     int `json:"serials"`
	DERBytesAvg int `json:"der_bytes_avg"`
}

// serials writes the serials of the newest leaf certificates of an issuer
// (the enrolled ones, after a load), and reports their average DER size.
func serials(args []string) (any, error) {
	fs := flag.NewFlagSet("serials", flag.ContinueOnError)
	db := fs.String("db", "", "the appliance's SQLite database")
	dsnFile := fs.String("dsn-file", "", "read a PostgreSQL store instead: the file holding its DSN")
	issuer := fs.String("issuer", "ecdsa-int-1", "issuer generation ID")
	newest := fs.Int("newest", 1000, "how many of the newest leaf certificates")
	out := fs.String("out", "", "file to write the serials to")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if (*db == "") == (*dsnFile == "") || *out == "" || *newest < 1 {
		return nil, errors.New("need -db or -dsn-file, -out and -newest >= 1")
	}
	ctx := context.Background()
	var st store.Store
	var err error
	if *dsnFile != "" {
		st, err = openPostgres(ctx, *dsnFile)
	} else {
		st, err = store.OpenSQLite(ctx, *db)
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	certs, err := st.ListCertificates(ctx, store.ListOptions{IssuerID: *issuer, Limit: *newest + 16})
	if err != nil {
		return nil, err
	}
	var list []string
	size := 0
	for _, c := range certs {
		if c.Profile != "leaf" || len(list) == *newest {
			continue
		}
		list = append(list, store.SerialKey(c.Serial))
		size += len(c.DER)
	}
	if len(list) == 0 {
		return nil, errors.New("no leaf certificates in the store")
	}
	if err := os.WriteFile(*out, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	return SerialsReport{Serials: len(list), DERBytesAvg: size / len(list)}, nil
}

// openPostgres opens the PostgreSQL store whose DSN is in file.
func openPostgres(ctx context.Context, file string) (*store.Postgres, error) {
	dsn, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return store.OpenPostgres(ctx, strings.TrimSpace(string(dsn)))
}

// pgSize is the size on disk of the database of the DSN in file.
func pgSize(ctx context.Context, file string) (int64, error) {
	dsn, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, strings.TrimSpace(string(dsn)))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	return n, err
}
