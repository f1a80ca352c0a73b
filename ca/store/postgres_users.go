package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Operator accounts and sessions, in PostgreSQL: each change with its
// audit record in one transaction. The account row is locked while a
// change reads it, so that two appliances cannot both remove "the
// last-but-one admin".

// pgUserTx reads an account for a change, after the accounts' lock: one
// change of accounts at a time, across appliances, so that two removals
// of admins cannot both see the other admin (nor wait on each other).
func pgUserTx(ctx context.Context, tx pgx.Tx, name string) (*User, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgUsersLock); err != nil {
		return nil, err
	}
	u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE name = $1 FOR UPDATE`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	return u, err
}

// pgAdminsTx counts the admins, locking their rows.
func pgAdminsTx(ctx context.Context, tx pgx.Tx) (int, error) {
	rows, err := tx.Query(ctx, `SELECT name FROM users WHERE role = 'admin' FOR UPDATE`)
	if err != nil {
		return 0, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return len(names), err
}

func pgAuditTx(ctx context.Context, tx pgx.Tx, a *AuditRecord) error {
	if a == nil {
		return nil
	}
	return pgAddAudit(ctx, tx, a)
}

// PutUser creates an operator account (ErrConflict when taken).
func (p *Postgres) PutUser(ctx context.Context, u *User, audit *AuditRecord) error {
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, 0, 0, 0)`,
			u.Name, u.Role, u.PasswordHash, unix(u.CreatedAt), unix(u.CreatedAt)); err != nil {
			return err
		}
		return pgAuditTx(ctx, tx, audit)
	})
	if _, ok := pgUnique(err); ok {
		return fmt.Errorf("account %q exists: %w", u.Name, ErrConflict)
	}
	return err
}

// UpdateUser changes an account's password, role or lockout.
func (p *Postgres) UpdateUser(ctx context.Context, name string, up UserUpdate, at time.Time, audit *AuditRecord) (*User, error) {
	var out *User
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		u, err := pgUserTx(ctx, tx, name)
		if err != nil {
			return err
		}
		if up.demotes(u) {
			if n, err := pgAdminsTx(ctx, tx); err != nil {
				return err
			} else if n <= 1 {
				return ErrLastAdmin
			}
		}
		endSessions, locked := up.apply(u, at)
		if _, err := tx.Exec(ctx, `UPDATE users SET role = $1, password = $2, updated_at = $3, failures = $4, locked_until = $5 WHERE name = $6`,
			u.Role, u.PasswordHash, unix(at), u.Failures, locked, name); err != nil {
			return err
		}
		if endSessions {
			if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE username = $1`, name); err != nil {
				return err
			}
		}
		out = u
		return pgAuditTx(ctx, tx, audit)
	})
	return out, err
}

// DeleteUser removes an account and its sessions.
func (p *Postgres) DeleteUser(ctx context.Context, name string, audit *AuditRecord) error {
	return p.inTx(ctx, func(tx pgx.Tx) error {
		u, err := pgUserTx(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.Role == "admin" {
			if n, err := pgAdminsTx(ctx, tx); err != nil {
				return err
			} else if n <= 1 {
				return ErrLastAdmin
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE username = $1`, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE name = $1`, name); err != nil {
			return err
		}
		return pgAuditTx(ctx, tx, audit)
	})
}

// User returns an account (ErrNotFound).
func (p *Postgres) User(ctx context.Context, name string) (*User, error) {
	u, err := scanUser(p.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	return u, err
}

// Users lists the accounts by name.
func (p *Postgres) Users(ctx context.Context) ([]*User, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*User, error) { return scanUser(r) })
}

// CountUsers counts the accounts.
func (p *Postgres) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, err
}

// LoginFailed counts a failed sign-in; the lockAfter-th in a row locks
// the account for lockFor, audited.
func (p *Postgres) LoginFailed(ctx context.Context, name string, at time.Time, lockAfter int, lockFor time.Duration, remote string) (*User, error) {
	var out *User
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		u, err := pgUserTx(ctx, tx, name)
		if err != nil {
			return err
		}
		lockedNow, locked := u.loginFailed(at, lockAfter, lockFor)
		if lockedNow {
			if err := pgAddAudit(ctx, tx, &AuditRecord{At: at, Actor: name, Action: "user_locked", Target: name,
				Detail: fmt.Sprintf("%d failed sign-ins in a row; locked until %s", u.Failures, u.LockedUntil.Format(time.RFC3339)), Remote: remote}); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET failures = $1, locked_until = $2 WHERE name = $3`, u.Failures, locked, name); err != nil {
			return err
		}
		out = u
		return nil
	})
	return out, err
}

// LoginSucceeded resets the failures, replaces the hash when rehash is
// set, and opens sess, audited.
func (p *Postgres) LoginSucceeded(ctx context.Context, name string, at time.Time, rehash string, sess *Session) error {
	return p.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET failures = 0, locked_until = 0, last_login = $1,
			password = CASE WHEN $2 = '' THEN password ELSE $2 END WHERE name = $3`, unix(at), rehash, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("account %q: %w", name, ErrNotFound)
		}
		if sess != nil {
			if _, err := tx.Exec(ctx, `INSERT INTO sessions (token_hash, username, csrf, created_at, last_seen, remote) VALUES ($1, $2, $3, $4, $5, $6)`,
				sess.TokenHash, sess.User, sess.CSRF, unix(sess.CreatedAt), unix(sess.LastSeen), sess.Remote); err != nil {
				return err
			}
		}
		return pgAddAudit(ctx, tx, &AuditRecord{At: at, Actor: name, Action: "user_signed_in", Target: name, Remote: sessRemote(sess)})
	})
}

// Session finds a session by its token's hash (ErrNotFound).
func (p *Postgres) Session(ctx context.Context, tokenHash []byte) (*Session, error) {
	var sess Session
	var created, seen int64
	err := p.pool.QueryRow(ctx, `SELECT token_hash, username, csrf, created_at, last_seen, remote FROM sessions WHERE token_hash = $1`, tokenHash).
		Scan(&sess.TokenHash, &sess.User, &sess.CSRF, &created, &seen, &sess.Remote)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	sess.CreatedAt, sess.LastSeen = fromUnix(created), fromUnix(seen)
	return &sess, nil
}

// TouchSession records a session's use.
func (p *Postgres) TouchSession(ctx context.Context, tokenHash []byte, at time.Time) error {
	_, err := p.pool.Exec(ctx, `UPDATE sessions SET last_seen = $1 WHERE token_hash = $2`, unix(at), tokenHash)
	return err
}

// DeleteSession ends a session, with its audit record when not nil.
func (p *Postgres) DeleteSession(ctx context.Context, tokenHash []byte, audit *AuditRecord) error {
	return p.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, tokenHash); err != nil {
			return err
		}
		return pgAuditTx(ctx, tx, audit)
	})
}

// ExpireSessions ends the sessions idle since idleBefore or opened
// before createdBefore.
func (p *Postgres) ExpireSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2`, unix(idleBefore), unix(createdBefore))
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
