package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// checkBindings looks up, in the writer's transaction, the bindings of
// c's names. A name bound to another holder refuses c (*NameBoundError)
// unless that binding has lapsed or c.Bind.TakeOver names that holder
// for it; it returns the
// bindings c takes from other holders, for the audit trail.
func (s *SQLite) checkBindings(ctx context.Context, c *Certificate) ([]*NameBinding, error) {
	var taken []*NameBinding
	for _, n := range c.SANs {
		var holder string
		var expires int64
		err := s.binding.QueryRowContext(ctx, n).Scan(&holder, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, err
		}
		b, err := judgeBinding(c, n, holder, expires)
		if err != nil {
			return nil, err
		}
		if b != nil {
			taken = append(taken, b)
		}
	}
	return taken, nil
}

// judgeBinding decides whether c may have name n, bound to holder until
// expires: nil when the holder is c's own, the binding c takes when it
// has lapsed or c.Bind.TakeOver names that holder for n, else a
// *NameBoundError.
func judgeBinding(c *Certificate, n, holder string, expires int64) (*NameBinding, error) {
	if holder == c.Holder {
		return nil, nil
	}
	b := &NameBinding{Name: n, Holder: holder, Expires: fromUnix(expires)}
	if !b.Expires.Before(c.Bind.Lapsed) && c.Bind.TakeOver[n] != holder {
		return nil, &NameBoundError{Name: n, Holder: holder}
	}
	return b, nil
}

// bindNames binds c's names to its holder, in the writer's transaction,
// and records the take-overs.
func (s *SQLite) bindNames(ctx context.Context, c *Certificate, taken []*NameBinding) error {
	for _, n := range c.SANs {
		if _, err := s.bind.ExecContext(ctx, n, c.Holder, unix(c.IssuedAt), unix(c.NotAfter), SerialKey(c.Serial)); err != nil {
			return fmt.Errorf("bind %s: %w", n, err)
		}
	}
	for _, b := range taken {
		actor, detail := transferAudit(c, b)
		if _, err := s.audit.ExecContext(ctx, unix(c.IssuedAt), actor, "name_transferred", b.Name, detail, ""); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// transferAudit is the actor and detail of the audit record of a name
// that c takes from binding b.
func transferAudit(c *Certificate, b *NameBinding) (actor, detail string) {
	actor, why := c.Bind.Actor, "the binding had lapsed (its certificates expired "+b.Expires.Format(time.RFC3339)+")"
	if !b.Expires.Before(c.Bind.Lapsed) {
		why = "an operator approved the request with the conflict shown"
	}
	if actor == "" {
		actor = "appliance"
	}
	return actor, fmt.Sprintf("from %s to %s with certificate %s: %s", b.Holder, c.Holder, SerialKey(c.Serial), why)
}

const bindingCols = `name, holder, since, expires, serial`

func scanBinding(r scanner) (*NameBinding, error) {
	var b NameBinding
	var since, expires int64
	var serial string
	if err := r.Scan(&b.Name, &b.Holder, &since, &expires, &serial); err != nil {
		return nil, err
	}
	b.Since, b.Expires = fromUnix(since), fromUnix(expires)
	var err error
	b.Serial, err = parseSerial(serial)
	return &b, err
}

// NameBindings implements Store.
func (s *SQLite) NameBindings(ctx context.Context, f BindingFilter) ([]*NameBinding, error) {
	q := `SELECT ` + bindingCols + ` FROM name_bindings WHERE 1=1`
	var args []any
	if f.Name != "" {
		q += ` AND name = ?`
		args = append(args, f.Name)
	}
	if f.Holder != "" {
		q += ` AND instr(holder, ?) > 0`
		args = append(args, f.Holder)
	}
	q += ` ORDER BY name`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanBindings(rows)
}

// scanBindings reads rows of bindingCols.
func scanBindings(rows rowIter) ([]*NameBinding, error) {
	var out []*NameBinding
	for rows.Next() {
		b, err := scanBinding(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// ReleaseName implements Store.
func (s *SQLite) ReleaseName(ctx context.Context, name, actor, remote string, at time.Time) (*NameBinding, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	b, err := scanBinding(tx.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM name_bindings WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM name_bindings WHERE name = ?`, name); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("released from %s (bound since %s, its certificates valid until %s)", b.Holder,
		b.Since.Format(time.RFC3339), b.Expires.Format(time.RFC3339))
	if _, err := tx.ExecContext(ctx, auditSQL, unix(at), actor, "name_released", name, detail, remote); err != nil {
		return nil, err
	}
	if err := addEvent(ctx, tx, EventNameReleased, name, at); err != nil {
		return nil, err
	}
	return b, tx.Commit()
}

// AddAudit implements Store.
func (s *SQLite) AddAudit(ctx context.Context, a *AuditRecord) error {
	_, err := s.w.ExecContext(ctx, auditSQL, unix(a.At), a.Actor, a.Action, a.Target, a.Detail, a.Remote)
	return err
}

// Audit implements Store.
func (s *SQLite) Audit(ctx context.Context, limit int) ([]*AuditRecord, error) {
	q := `SELECT id, at, actor, action, target, detail, remote FROM audit ORDER BY id DESC`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	return s.queryAudit(ctx, q)
}
