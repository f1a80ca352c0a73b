package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The operator's searches, name release and the readiness check, in
// PostgreSQL. The searches are SQLite's queries (searchSQL,
// auditSearchSQL) in PostgreSQL's dialect: $n parameters, the id column
// for rowid, a boolean revoked.

// pgDialect rewrites a query of the SQLite store's search for PostgreSQL.
// The searches' SQL holds no "?" but their parameters.
func pgDialect(query string) string {
	// SQLite's LIKE ignores the case of ASCII letters: ILIKE here.
	query = strings.NewReplacer("c.rowid", "c.id", "c.revoked = 1", "c.revoked", "c.revoked = 0", "NOT c.revoked",
		"WHERE 1=1", "WHERE true", " LIKE ", " ILIKE ").Replace(query)
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// SearchCertificates is the operator's search, a page at a time.
func (p *Postgres) SearchCertificates(ctx context.Context, q CertificateQuery) (*CertificatePage, error) {
	query, args, order, err := searchSQL(&q)
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, pgDialect(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return collectPage(rows, order, q.Limit)
}

// SearchAudit finds audit records, newest first; one more than Limit
// when there is an older page.
func (p *Postgres) SearchAudit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error) {
	query, args := auditSearchSQL(&q)
	rows, err := p.pool.Query(ctx, pgDialect(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAudits(rows)
}

// CountIssuedSince counts the certificates issued from since on.
func (p *Postgres) CountIssuedSince(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM certificates WHERE issued_at >= $1`, unix(since)).Scan(&n)
	return n, err
}

// ReleaseName removes a name's binding, audited, with an
// EventNameReleased (ErrNotFound when the name is not bound).
func (p *Postgres) ReleaseName(ctx context.Context, name, actor, remote string, at time.Time) (*NameBinding, error) {
	var b *NameBinding
	err := p.eventTx(ctx, func(tx pgx.Tx) error {
		var err error
		b, err = scanBinding(tx.QueryRow(ctx, `SELECT `+bindingCols+` FROM name_bindings WHERE name = $1 FOR UPDATE`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM name_bindings WHERE name = $1`, name); err != nil {
			return err
		}
		detail := fmt.Sprintf("released from %s (bound since %s, its certificates valid until %s)", b.Holder,
			b.Since.Format(time.RFC3339), b.Expires.Format(time.RFC3339))
		if err := pgAddAudit(ctx, tx, &AuditRecord{At: at, Actor: actor, Action: "name_released", Target: name, Detail: detail, Remote: remote}); err != nil {
			return err
		}
		return pgAddEvent(ctx, tx, EventNameReleased, name, at)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// CheckWritable makes a write in a transaction it rolls back: a database
// in recovery (a standby) or unreachable fails it.
func (p *Postgres) CheckWritable(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = version`); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
