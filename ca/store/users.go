package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is an operator account of the web UI.
type User struct {
	Name         string
	Role         string // viewer, operator or admin
	PasswordHash string // argon2id, PHC string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Failures counts failed sign-ins in a row; LockedUntil is when a
	// lockout they caused ends (zero: not locked).
	Failures    int
	LockedUntil time.Time
	LastLogin   time.Time
}

// UserUpdate changes an account: the fields that are not empty.
type UserUpdate struct {
	PasswordHash string
	Role         string
	// Unlock clears the failure count and any lockout.
	Unlock bool
}

// Session is a signed-in browser. The store keeps the SHA-256 of its
// cookie token, never the token.
type Session struct {
	TokenHash []byte
	User      string
	CSRF      string // the token the session's forms and API calls carry
	CreatedAt time.Time
	LastSeen  time.Time
	Remote    string
}

// ErrLastAdmin refuses to remove, or take the admin role from, the last
// admin account.
var ErrLastAdmin = errors.New("the last admin account cannot be removed or lose its role")

const userCols = `name, role, password, created_at, updated_at, failures, locked_until, last_login`

func scanUser(r scanner) (*User, error) {
	var u User
	var created, updated, locked, last int64
	if err := r.Scan(&u.Name, &u.Role, &u.PasswordHash, &created, &updated, &u.Failures, &locked, &last); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt = fromUnix(created), fromUnix(updated)
	if locked > 0 {
		u.LockedUntil = fromUnix(locked)
	}
	if last > 0 {
		u.LastLogin = fromUnix(last)
	}
	return &u, nil
}

type auditKey struct{}

// WithAudit returns ctx carrying an operator's audit record. The store's
// operator actions (Revoke, DecidePending) write it in their own
// transaction, so that the action and its record commit together or not
// at all; the store fills Target when empty and appends what it read
// (the certificate's names, the request's subject) to Detail.
func WithAudit(ctx context.Context, a *AuditRecord) context.Context {
	return context.WithValue(ctx, auditKey{}, a)
}

func auditFrom(ctx context.Context) *AuditRecord {
	a, _ := ctx.Value(auditKey{}).(*AuditRecord)
	return a
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func addAuditTx(ctx context.Context, tx *sql.Tx, a *AuditRecord) error {
	if a == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, auditSQL, unix(a.At), a.Actor, a.Action, a.Target, a.Detail, a.Remote)
	return err
}

func userTx(ctx context.Context, tx *sql.Tx, name string) (*User, error) {
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	return u, err
}

func adminsTx(ctx context.Context, tx *sql.Tx) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = 'admin'`).Scan(&n)
	return n, err
}

// PutUser implements Store.
func (s *SQLite) PutUser(ctx context.Context, u *User, audit *AuditRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, 0, 0, 0)`,
			u.Name, u.Role, u.PasswordHash, unix(u.CreatedAt), unix(u.CreatedAt))
		if isUnique(err) {
			return fmt.Errorf("account %q exists: %w", u.Name, ErrConflict)
		}
		if err != nil {
			return err
		}
		return addAuditTx(ctx, tx, audit)
	})
}

// UpdateUser implements Store.
func (s *SQLite) UpdateUser(ctx context.Context, name string, up UserUpdate, at time.Time, audit *AuditRecord) (*User, error) {
	var out *User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, name)
		if err != nil {
			return err
		}
		if up.demotes(u) {
			if n, err := adminsTx(ctx, tx); err != nil {
				return err
			} else if n <= 1 {
				return ErrLastAdmin
			}
		}
		endSessions, locked := up.apply(u, at)
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ?, password = ?, updated_at = ?, failures = ?, locked_until = ? WHERE name = ?`,
			u.Role, u.PasswordHash, unix(at), u.Failures, locked, name); err != nil {
			return err
		}
		// A new password or role ends the account's sessions: they
		// were opened under the old one.
		if endSessions {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user = ?`, name); err != nil {
				return err
			}
		}
		out = u
		return addAuditTx(ctx, tx, audit)
	})
	return out, err
}

// DeleteUser implements Store.
func (s *SQLite) DeleteUser(ctx context.Context, name string, audit *AuditRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.Role == "admin" {
			if n, err := adminsTx(ctx, tx); err != nil {
				return err
			} else if n <= 1 {
				return ErrLastAdmin
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user = ?`, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name); err != nil {
			return err
		}
		return addAuditTx(ctx, tx, audit)
	})
}

// User implements Store.
func (s *SQLite) User(ctx context.Context, name string) (*User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("account %q: %w", name, ErrNotFound)
	}
	return u, err
}

// Users implements Store.
func (s *SQLite) Users(ctx context.Context) ([]*User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountUsers implements Store.
func (s *SQLite) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, err
}

// LoginFailed implements Store.
func (s *SQLite) LoginFailed(ctx context.Context, name string, at time.Time, lockAfter int, lockFor time.Duration, remote string) (*User, error) {
	var out *User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, name)
		if err != nil {
			return err
		}
		lockedNow, locked := u.loginFailed(at, lockAfter, lockFor)
		if lockedNow {
			if err := addAuditTx(ctx, tx, &AuditRecord{At: at, Actor: name, Action: "user_locked", Target: name,
				Detail: fmt.Sprintf("%d failed sign-ins in a row; locked until %s", u.Failures, u.LockedUntil.Format(time.RFC3339)), Remote: remote}); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET failures = ?, locked_until = ? WHERE name = ?`, u.Failures, locked, name); err != nil {
			return err
		}
		out = u
		return nil
	})
	return out, err
}

// LoginSucceeded implements Store.
func (s *SQLite) LoginSucceeded(ctx context.Context, name string, at time.Time, rehash string, sess *Session) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET failures = 0, locked_until = 0, last_login = ?, password = CASE WHEN ? = '' THEN password ELSE ? END WHERE name = ?`,
			unix(at), rehash, rehash, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %q: %w", name, ErrNotFound)
		}
		if sess != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (token_hash, user, csrf, created_at, last_seen, remote) VALUES (?, ?, ?, ?, ?, ?)`,
				sess.TokenHash, sess.User, sess.CSRF, unix(sess.CreatedAt), unix(sess.LastSeen), sess.Remote); err != nil {
				return err
			}
		}
		return addAuditTx(ctx, tx, &AuditRecord{At: at, Actor: name, Action: "user_signed_in", Target: name, Remote: sessRemote(sess)})
	})
}

func sessRemote(s *Session) string {
	if s == nil {
		return ""
	}
	return s.Remote
}

// Session implements Store.
func (s *SQLite) Session(ctx context.Context, tokenHash []byte) (*Session, error) {
	var sess Session
	var created, seen int64
	err := s.r.QueryRowContext(ctx, `SELECT token_hash, user, csrf, created_at, last_seen, remote FROM sessions WHERE token_hash = ?`, tokenHash).
		Scan(&sess.TokenHash, &sess.User, &sess.CSRF, &created, &seen, &sess.Remote)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	sess.CreatedAt, sess.LastSeen = fromUnix(created), fromUnix(seen)
	return &sess, nil
}

// TouchSession implements Store.
func (s *SQLite) TouchSession(ctx context.Context, tokenHash []byte, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE token_hash = ?`, unix(at), tokenHash)
	return err
}

// DeleteSession implements Store.
func (s *SQLite) DeleteSession(ctx context.Context, tokenHash []byte, audit *AuditRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash); err != nil {
			return err
		}
		return addAuditTx(ctx, tx, audit)
	})
}

// ExpireSessions implements Store.
func (s *SQLite) ExpireSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE last_seen < ? OR created_at < ?`, unix(idleBefore), unix(createdBefore))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// demotes says whether up takes the admin role from u.
func (up UserUpdate) demotes(u *User) bool {
	return up.Role != "" && up.Role != u.Role && u.Role == "admin"
}

// apply makes up's changes to u at time at. It returns whether they end
// the account's sessions (a new password or role: they were opened under
// the old one) and the lockout's end to store (0 for none).
func (up UserUpdate) apply(u *User, at time.Time) (endSessions bool, locked int64) {
	if up.PasswordHash != "" {
		u.PasswordHash, endSessions = up.PasswordHash, true
	}
	if up.Role != "" && up.Role != u.Role {
		u.Role, endSessions = up.Role, true
	}
	if up.Unlock {
		u.Failures, u.LockedUntil = 0, time.Time{}
	}
	if !u.LockedUntil.IsZero() {
		locked = unix(u.LockedUntil)
	}
	u.UpdatedAt = at
	return endSessions, locked
}

// loginFailed counts a failed sign-in on u at time at; the lockAfter-th
// in a row locks the account for lockFor (lockedNow). It returns the
// lockout's end to store (0 for none).
func (u *User) loginFailed(at time.Time, lockAfter int, lockFor time.Duration) (lockedNow bool, locked int64) {
	u.Failures++
	if u.Failures >= lockAfter && (u.LockedUntil.IsZero() || !at.Before(u.LockedUntil)) {
		u.LockedUntil, lockedNow = at.Add(lockFor), true
	}
	if !u.LockedUntil.IsZero() {
		locked = unix(u.LockedUntil)
	}
	return lockedNow, locked
}
