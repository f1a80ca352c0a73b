package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// CertificateQuery selects certificates for the operator's search. Every
// filter set must hold. Results come newest first, a page at a time:
// Before is the Cursor of the last certificate of the previous page.
type CertificateQuery struct {
	// Name matches a subjectAltName (case-insensitive); a trailing "*"
	// makes it a prefix.
	Name string
	// Serial is one certificate's serial (SerialKey form).
	Serial   string
	Identity string
	IssuerID string
	// Status is "valid", "revoked" or "expired" (at Now), or "" for any.
	Status string
	Now    time.Time
	Before int64
	Limit  int
}

// CertificatePage is one page of a search.
type CertificatePage struct {
	Certificates []*Certificate
	// Cursors are the certificates' positions, for the next page's
	// Before; More says whether there is one.
	Cursors []int64
	More    bool
}

// normName is how a name is kept in the names index: DNS names compare
// without regard to case.
func normName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// SearchCertificates implements Store. Each filter is served by an
// index whose order is the certificates' own (rowid, newest first), so a
// page costs the rows it shows, however many are stored.
func (s *SQLite) SearchCertificates(ctx context.Context, q CertificateQuery) (*CertificatePage, error) {
	if q.Limit <= 0 || q.Limit > 500 {
		q.Limit = 50
	}
	from := `certificates c`
	where := []string{"1=1"}
	var args []any
	if q.Name != "" {
		from = `certificate_names n JOIN certificates c ON c.rowid = n.cert`
		name := normName(q.Name)
		if p, ok := strings.CutSuffix(name, "*"); ok {
			where = append(where, `n.name >= ? AND n.name < ?`)
			args = append(args, p, p+"\U0010FFFF")
		} else {
			where = append(where, `n.name = ?`)
			args = append(args, name)
		}
	}
	if q.Serial != "" {
		where = append(where, `c.serial = ?`)
		args = append(args, q.Serial)
	}
	if q.Identity != "" {
		where = append(where, `c.identity = ?`)
		args = append(args, q.Identity)
	}
	if q.IssuerID != "" {
		where = append(where, `c.issuer_id = ?`)
		args = append(args, q.IssuerID)
	}
	switch q.Status {
	case "":
	case "revoked":
		where = append(where, `c.revoked = 1`)
	case "valid":
		where = append(where, `c.revoked = 0 AND c.not_after > ?`)
		args = append(args, unix(q.Now))
	case "expired":
		where = append(where, `c.revoked = 0 AND c.not_after <= ?`)
		args = append(args, unix(q.Now))
	default:
		return nil, fmt.Errorf("status %q: want valid, revoked or expired", q.Status)
	}
	if q.Before > 0 {
		where = append(where, `c.rowid < ?`)
		args = append(args, q.Before)
	}
	cols := "c." + strings.ReplaceAll(certCols, ", ", ", c.")
	query := fmt.Sprintf(`SELECT c.rowid, %s FROM %s WHERE %s ORDER BY c.rowid DESC LIMIT %d`, cols, from, strings.Join(where, " AND "), q.Limit+1)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := &CertificatePage{}
	for rows.Next() {
		var id int64
		c, err := scanCert(prefixed{rows, &id})
		if err != nil {
			return nil, err
		}
		if len(page.Certificates) == q.Limit {
			page.More = true
			break
		}
		page.Certificates = append(page.Certificates, c)
		page.Cursors = append(page.Cursors, id)
	}
	return page, rows.Err()
}

// prefixed scans a leading column into id, then the rest as r's caller asks.
type prefixed struct {
	r  *sql.Rows
	id *int64
}

func (p prefixed) Scan(dest ...any) error { return p.r.Scan(append([]any{p.id}, dest...)...) }

// CountIssuedSince implements Store.
func (s *SQLite) CountIssuedSince(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE issued_at >= ?`, unix(since)).Scan(&n)
	return n, err
}

// AuditQuery selects audit records: Text, when set, must appear in the
// actor, action, target, detail or address (case-insensitive); pages
// go back from Before (an ID), newest first.
type AuditQuery struct {
	Text   string
	Before int64
	Limit  int
}

// SearchAudit implements Store. It returns one record more than Limit
// when there is an older page.
func (s *SQLite) SearchAudit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error) {
	if q.Limit <= 0 || q.Limit > 500 {
		q.Limit = 100
	}
	query := `SELECT id, at, actor, action, target, detail, remote FROM audit WHERE 1=1`
	var args []any
	if q.Before > 0 {
		query += ` AND id < ?`
		args = append(args, q.Before)
	}
	if q.Text != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q.Text) + "%"
		var or []string
		for _, col := range []string{"actor", "action", "target", "detail", "remote"} {
			or = append(or, col+` LIKE ? ESCAPE '\'`)
			args = append(args, like)
		}
		query += ` AND (` + strings.Join(or, " OR ") + `)`
	}
	query += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*AuditRecord
	for rows.Next() {
		var a AuditRecord
		var at int64
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.Target, &a.Detail, &a.Remote); err != nil {
			return nil, err
		}
		a.At = fromUnix(at)
		a.Detail = strings.TrimSpace(a.Detail)
		out = append(out, &a)
	}
	return out, rows.Err()
}

// indexNames fills the names index for the certificates stored before
// it existed (migration 8).
func indexNames(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT rowid, sans FROM certificates`)
	if err != nil {
		return err
	}
	type cert struct {
		id   int64
		sans string
	}
	var certs []cert
	for rows.Next() {
		var c cert
		if err := rows.Scan(&c.id, &c.sans); err != nil {
			rows.Close()
			return err
		}
		certs = append(certs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, insertNameByRowSQL)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, c := range certs {
		for _, n := range splitNames(c.sans) {
			if _, err := st.ExecContext(ctx, normName(n), c.id); err != nil {
				return err
			}
		}
	}
	return nil
}

const (
	insertNameByRowSQL = `INSERT OR IGNORE INTO certificate_names (name, cert) VALUES (?, ?)`
	insertNameSQL      = `INSERT OR IGNORE INTO certificate_names (name, cert) SELECT ?, rowid FROM certificates WHERE serial = ?`
)
