package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CertificateQuery selects certificates for the operator's search. Every
// filter set must hold. Results come a page at a time: newest first;
// expired ones by notAfter, the last to expire first; a name prefix's in
// the names' order, then oldest first. After is the Next of the previous
// page.
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
	After  string
	Limit  int
}

// CertificatePage is one page of a search; Next, when not empty, is the
// After of the following page.
type CertificatePage struct {
	Certificates []*Certificate
	Next         string
}

// ErrBadQuery is a search the store cannot run: an unknown status, a
// cursor it did not make.
var ErrBadQuery = errors.New("bad query")

// normName is how a name is kept in the names index: DNS names compare
// without regard to case.
func normName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// SearchCertificates implements Store. Each kind of query reads an index
// in the order of its results (the table's own, newest first; notAfter;
// the names), so that a page costs the rows it shows, however many are
// stored.
func (s *SQLite) SearchCertificates(ctx context.Context, q CertificateQuery) (*CertificatePage, error) {
	query, args, order, err := searchSQL(&q)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return collectPage(rows, order, q.Limit)
}

// rowIter is what *sql.Rows and pgx.Rows both do.
type rowIter interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// collectPage reads a search's rows (its rowid, notAfter and name, then
// certCols) into a page of at most limit certificates.
func collectPage(rows rowIter, order byte, limit int) (*CertificatePage, error) {
	page := &CertificatePage{}
	var last string
	// A certificate with two names under one prefix comes once a page.
	seen := map[string]bool{}
	read := 0
	for rows.Next() {
		read++
		var (
			id, notAfter int64
			name         string
		)
		c, err := scanCert(prefixed{rows, []any{&id, &notAfter, &name}})
		if err != nil {
			return nil, err
		}
		if len(page.Certificates) == limit {
			page.Next = last
			break
		}
		key := SerialKey(c.Serial)
		if !seen[key] {
			seen[key] = true
			page.Certificates = append(page.Certificates, c)
		}
		switch order {
		case 'r', 'n':
			last = fmt.Sprintf("%c%d", order, id)
		case 'e':
			last = fmt.Sprintf("e%d.%d", notAfter, id)
		case 'p':
			last = fmt.Sprintf("p%d.%s", id, name)
		}
	}
	if page.Next == "" && read > limit {
		// The extra row was a certificate already on the page: there may
		// be more after it.
		page.Next = last
	}
	return page, rows.Err()
}

// searchSQL is the query of a search, its arguments, and the order of
// its results, with q.Limit brought within 1 to 500 (50 when unset):
// by rowid (r), by the rowid in the names index for one
// name (n), by notAfter (e), by name for a prefix (p).
func searchSQL(q *CertificateQuery) (string, []any, byte, error) {
	switch {
	case q.Limit <= 0:
		q.Limit = 50
	case q.Limit > 500:
		q.Limit = 500
	}
	from := `certificates c`
	where := []string{"1=1"}
	var args []any
	// order is how the results come; the cursor carries its keys.
	order := byte('r')
	if q.Name != "" {
		from = `certificate_names n JOIN certificates c ON c.rowid = n.cert`
		name := normName(q.Name)
		if p, ok := strings.CutSuffix(name, "*"); ok {
			where = append(where, `n.name >= ? AND n.name < ?`)
			args = append(args, p, p+"\U0010FFFF")
			order = 'p'
		} else {
			where = append(where, `n.name = ?`)
			args = append(args, name)
			order = 'n'
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
		// The unary + keeps the planner off the notAfter index: nearly
		// every row is valid, and the rowid order is the one wanted.
		where = append(where, `c.revoked = 0 AND +c.not_after > ?`)
		args = append(args, unix(q.Now))
	case "expired":
		where = append(where, `c.revoked = 0 AND c.not_after <= ?`)
		args = append(args, unix(q.Now))
		if order == 'r' {
			order = 'e'
		}
	default:
		return "", nil, 0, fmt.Errorf("status %q: want valid, revoked or expired: %w", q.Status, ErrBadQuery)
	}
	var orderBy string
	switch order {
	case 'r':
		orderBy = `c.rowid DESC`
	case 'e':
		orderBy = `c.not_after DESC, c.rowid DESC`
	case 'n':
		orderBy = `n.cert DESC` // c.rowid, in the names index's order
	case 'p':
		orderBy = `n.name, n.cert`
	}
	if q.After != "" {
		cond, cargs, err := afterCursor(order, q.After)
		if err != nil {
			return "", nil, 0, err
		}
		where = append(where, cond)
		args = append(args, cargs...)
	}
	cols := "c." + strings.ReplaceAll(certCols, ", ", ", c.")
	nameCol := "''"
	if q.Name != "" {
		nameCol = "n.name"
	}
	query := fmt.Sprintf(`SELECT c.rowid, c.not_after, %s, %s FROM %s WHERE %s ORDER BY %s LIMIT %d`,
		nameCol, cols, from, strings.Join(where, " AND "), orderBy, q.Limit+1)
	return query, args, order, nil
}

// afterCursor is the condition that continues after a cursor of order.
func afterCursor(order byte, cur string) (string, []any, error) {
	bad := fmt.Errorf("cursor %q is not one of this search's pages: %w", cur, ErrBadQuery)
	if len(cur) < 2 || cur[0] != order {
		return "", nil, bad
	}
	rest := cur[1:]
	switch order {
	case 'r', 'n':
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || id <= 0 {
			return "", nil, bad
		}
		if order == 'n' {
			return `n.cert < ?`, []any{id}, nil
		}
		return `c.rowid < ?`, []any{id}, nil
	case 'e':
		a, b, ok := strings.Cut(rest, ".")
		na, err1 := strconv.ParseInt(a, 10, 64)
		id, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return "", nil, bad
		}
		return `(c.not_after, c.rowid) < (?, ?)`, []any{na, id}, nil
	default: // 'p'
		a, name, ok := strings.Cut(rest, ".")
		id, err := strconv.ParseInt(a, 10, 64)
		if !ok || err != nil {
			return "", nil, bad
		}
		return `(n.name, n.cert) > (?, ?)`, []any{name, id}, nil
	}
}

// prefixed scans leading columns into lead, then the rest as r's caller
// asks.
type prefixed struct {
	r    scanner
	lead []any
}

func (p prefixed) Scan(dest ...any) error {
	return p.r.Scan(append(append([]any(nil), p.lead...), dest...)...)
}

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
	query, args := auditSearchSQL(&q)
	return s.queryAudit(ctx, query, args...)
}

// auditSearchSQL is the query of an audit search, and its arguments.
func auditSearchSQL(q *AuditQuery) (string, []any) {
	switch {
	case q.Limit <= 0:
		q.Limit = 100
	case q.Limit > 500:
		q.Limit = 500
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
	return query + fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, q.Limit+1), args
}

// queryAudit runs a query of audit records (id, at, actor, action,
// target, detail, remote).
func (s *SQLite) queryAudit(ctx context.Context, query string, args ...any) ([]*AuditRecord, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAudits(rows)
}

// scanAudits reads audit records (id, at, actor, action, target, detail,
// remote).
func scanAudits(rows rowIter) ([]*AuditRecord, error) {
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
	// insertNameSQL follows the certificate's INSERT on the writer's
	// connection: last_insert_rowid() is that certificate's (the count
	// trigger's insert does not change it after the trigger, nor does an
	// insert into the WITHOUT ROWID names table).
	insertNameSQL = `INSERT OR IGNORE INTO certificate_names (name, cert) VALUES (?, last_insert_rowid())`
)
