package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Requests waiting for an operator, in PostgreSQL.

// PutPending records a request awaiting approval.
func (p *Postgres) PutPending(ctx context.Context, r *Pending) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO pending (id, operation, label, csr, spki_sha256, subject, sans, client, state, created_at, expires_at, remote, holder, conflicts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, r.ID, r.Operation, r.Label, r.CSR, r.SPKIHash, r.Subject, joinNames(r.SANs), r.Client,
		string(r.State), unix(r.CreatedAt), unix(r.ExpiresAt), r.Remote, r.Holder, joinNames(r.Conflicts))
	if _, ok := pgUnique(err); ok {
		return fmt.Errorf("pending request %s exists: %w", r.ID, ErrConflict)
	}
	return err
}

func (p *Postgres) pendingRow(ctx context.Context, where string, arg any) (*Pending, error) {
	r, err := scanPending(p.pool.QueryRow(ctx, `SELECT `+pendingCols+` FROM pending WHERE `+where+` ORDER BY n DESC LIMIT 1`, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// PendingByID finds a request by ID.
func (p *Postgres) PendingByID(ctx context.Context, id string) (*Pending, error) {
	return p.pendingRow(ctx, `id = $1`, id)
}

// PendingByKey finds the newest request for a public key.
func (p *Postgres) PendingByKey(ctx context.Context, spkiHash []byte) (*Pending, error) {
	return p.pendingRow(ctx, `spki_sha256 = $1`, spkiHash)
}

// CountPending counts the requests in a state.
func (p *Postgres) CountPending(ctx context.Context, state PendingState) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM pending WHERE state = $1`, string(state)).Scan(&n)
	return n, err
}

// ListPending lists requests in a state ("" for all), newest first.
func (p *Postgres) ListPending(ctx context.Context, state PendingState) ([]*Pending, error) {
	q := `SELECT ` + pendingCols + ` FROM pending`
	var args []any
	if state != "" {
		q += ` WHERE state = $1`
		args = append(args, string(state))
	}
	rows, err := p.pool.Query(ctx, q+` ORDER BY n DESC`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Pending, error) { return scanPending(r) })
}

// DecidePending moves a waiting request to approved or denied, with its
// event and the audit record of ctx.
func (p *Postgres) DecidePending(ctx context.Context, id string, st PendingState, by string, at time.Time) (*Pending, error) {
	if st != PendingApproved && st != PendingDenied {
		return nil, fmt.Errorf("decide pending: bad state %q", st)
	}
	var r *Pending
	err := p.eventTx(ctx, func(tx pgx.Tx) error {
		var err error
		r, err = scanPending(tx.QueryRow(ctx, `SELECT `+pendingCols+` FROM pending WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if r.State != PendingWaiting {
			return fmt.Errorf("request %s is %s: %w", id, r.State, ErrConflict)
		}
		if !at.Before(r.ExpiresAt) {
			return fmt.Errorf("request %s expired at %s: %w", id, r.ExpiresAt.Format(time.RFC3339), ErrConflict)
		}
		if _, err := tx.Exec(ctx, `UPDATE pending SET state = $1, decided_at = $2, decided_by = $3 WHERE id = $4`, string(st), unix(at), by, id); err != nil {
			return err
		}
		if err := pgAddEvent(ctx, tx, EventPendingDecided, id, at); err != nil {
			return err
		}
		if a := auditFrom(ctx); a != nil {
			rec := *a
			if rec.Target == "" {
				rec.Target = id
			}
			rec.Detail = joinDetail(rec.Detail, fmt.Sprintf("%s %s (%s); %s", r.Operation, r.Subject, strings.Join(r.SANs, ", "), r.Client))
			return pgAddAudit(ctx, tx, &rec)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return r, err
		}
		return nil, err
	}
	r.State, r.DecidedAt, r.DecidedBy = st, fromUnix(unix(at)), by
	return r, nil
}

// SetPendingIssued marks an approved request issued with a serial.
func (p *Postgres) SetPendingIssued(ctx context.Context, id string, serial *big.Int) error {
	tag, err := p.pool.Exec(ctx, `UPDATE pending SET state = $1, serial = $2 WHERE id = $3 AND state = $4`,
		string(PendingIssued), SerialKey(serial), id, string(PendingApproved))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("request %s is not approved: %w", id, ErrConflict)
	}
	return nil
}

// ExpirePending marks waiting (and approved, uncollected) requests past
// their expiry expired.
func (p *Postgres) ExpirePending(ctx context.Context, now time.Time) (int, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE pending SET state = $1 WHERE state IN ($2, $3) AND expires_at <= $4`,
		string(PendingExpired), string(PendingWaiting), string(PendingApproved), unix(now))
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
