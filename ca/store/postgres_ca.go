package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The CA generations, offline roots' CRLs and the counts the CA reads, in
// PostgreSQL: each change in one transaction with its EventGenerations,
// as in SQLite.

func (p *Postgres) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.pool, fn)
}

// eventTx is inTx for a transaction that adds events: it takes the events'
// lock first, so that event ids are given in the order their
// transactions commit (a reader that saw id n never finds a smaller one
// later), and before any row lock, so that it cannot deadlock with them.
func (p *Postgres) eventTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgEventLock); err != nil {
			return err
		}
		return fn(tx)
	})
}

// pgInsertGeneration records g, with its event, in tx.
func pgInsertGeneration(ctx context.Context, tx pgx.Tx, g *Generation) error {
	var activeFrom int64
	if !g.ActiveFrom.IsZero() {
		activeFrom = unix(g.ActiveFrom)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO generations (id, hierarchy, role, seq, parent_id, state, cert_der, key_file, created_at, active_from)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, g.ID, g.Hierarchy, g.Role, g.Seq, g.ParentID, string(g.State), g.CertDER, g.KeyFile, unix(g.CreatedAt), activeFrom); err != nil {
		if _, ok := pgUnique(err); ok {
			return fmt.Errorf("generation %s exists: %w", g.ID, ErrConflict)
		}
		return err
	}
	return pgAddEvent(ctx, tx, EventGenerations, g.ID, g.CreatedAt)
}

// PutGeneration records a new CA generation.
func (p *Postgres) PutGeneration(ctx context.Context, g *Generation) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error { return pgInsertGeneration(ctx, tx, g) })
}

// PutGenerations records several generations in one transaction.
func (p *Postgres) PutGenerations(ctx context.Context, gens ...*Generation) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		for _, g := range gens {
			if err := pgInsertGeneration(ctx, tx, g); err != nil {
				return err
			}
		}
		return nil
	})
}

// ActivateHierarchy ends a root rollover's overlap: next becomes active,
// active retiring.
func (p *Postgres) ActivateHierarchy(ctx context.Context, hierarchy string, at time.Time) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		// Roots and intermediates move; link certificates stay published.
		if _, err := tx.Exec(ctx, `UPDATE generations SET state = $1 WHERE hierarchy = $2 AND state = $3 AND role IN ('root', 'intermediate')`,
			string(StateRetiring), hierarchy, string(StateActive)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE generations SET state = $1 WHERE hierarchy = $2 AND state = $3`, string(StateActive), hierarchy, string(StateNext))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("no generation of %s waits to become active: %w", hierarchy, ErrConflict)
		}
		return pgAddEvent(ctx, tx, EventGenerations, hierarchy, at)
	})
}

// Generations lists every generation, oldest first.
func (p *Postgres) Generations(ctx context.Context) ([]*Generation, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, hierarchy, role, seq, parent_id, state, cert_der, key_file, created_at, active_from FROM generations ORDER BY n`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Generation, error) {
		var g Generation
		var state string
		var created, activeFrom int64
		if err := r.Scan(&g.ID, &g.Hierarchy, &g.Role, &g.Seq, &g.ParentID, &state, &g.CertDER, &g.KeyFile, &created, &activeFrom); err != nil {
			return nil, err
		}
		g.State, g.CreatedAt = GenerationState(state), fromUnix(created)
		if activeFrom != 0 {
			g.ActiveFrom = fromUnix(activeFrom)
		}
		return &g, nil
	})
}

// RollGeneration records next and moves old to oldState, with revoked
// (the old CA certificate, on compromise) recorded revoked, at once.
func (p *Postgres) RollGeneration(ctx context.Context, next *Generation, old string, oldState GenerationState, revoked *Certificate) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE generations SET state = $1 WHERE id = $2 AND state = $3`, string(oldState), old, string(StateActive))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("generation %s is not active: %w", old, ErrConflict)
		}
		if err := pgInsertGeneration(ctx, tx, next); err != nil {
			return err
		}
		if c := revoked; c != nil {
			var inserted bool
			if err := tx.QueryRow(ctx, `INSERT INTO certificates
				(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, holder, revoked, revoked_at, reason)
				VALUES ($1, $2, $3, '', $4, $5, $6, $7, $8, $9, $10, $11, '', true, $12, $13)
				ON CONFLICT (serial) DO UPDATE SET revoked = true, revoked_at = excluded.revoked_at, reason = excluded.reason
				RETURNING (xmax = 0)`,
				SerialKey(c.Serial), c.IssuerID, c.Subject, c.KeyType, c.SPKIHash, unix(c.NotBefore), unix(c.NotAfter), unix(c.IssuedAt),
				c.Identity, c.Profile, c.DER, unix(c.RevokedAt), c.Reason).Scan(&inserted); err != nil {
				return fmt.Errorf("revoke %s: %w", SerialKey(c.Serial), err)
			}
			if inserted {
				if err := pgCount(ctx, tx, c.IssuerID); err != nil {
					return err
				}
			}
			return pgAddEvent(ctx, tx, EventRevoked, c.IssuerID+"/"+SerialKey(c.Serial), c.RevokedAt)
		}
		return nil
	})
}

// pgCount counts one more certificate of issuer.
func pgCount(ctx context.Context, tx pgx.Tx, issuer string) error {
	_, err := tx.Exec(ctx, `INSERT INTO certificate_counts (issuer_id, n) VALUES ($1, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET n = certificate_counts.n + 1`, issuer)
	return err
}

// ForgetKey records that a generation's key is no longer held here.
func (p *Postgres) ForgetKey(ctx context.Context, id string, at time.Time, crl *StaticCRL) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		if crl != nil {
			if err := pgPutStaticCRL(ctx, tx, crl); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE generations SET key_file = '' WHERE id = $1 AND key_file <> ''`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("generation %s holds no key: %w", id, ErrConflict)
		}
		// A key taken offline leaves the database too.
		if _, err := tx.Exec(ctx, `DELETE FROM sealed_keys WHERE id = $1`, id); err != nil {
			return err
		}
		return pgAddEvent(ctx, tx, EventGenerations, id, at)
	})
}

// PutStaticCRL keeps a CRL signed away from the appliance.
func (p *Postgres) PutStaticCRL(ctx context.Context, crl *StaticCRL) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		if err := pgPutStaticCRL(ctx, tx, crl); err != nil {
			return err
		}
		return pgAddEvent(ctx, tx, EventGenerations, crl.IssuerID, time.Now())
	})
}

// pgPutStaticCRL is putStaticCRL in a PostgreSQL transaction.
func pgPutStaticCRL(ctx context.Context, tx pgx.Tx, crl *StaticCRL) error {
	var have, given *int64
	if err := tx.QueryRow(ctx, `SELECT number FROM static_crls WHERE issuer_id = $1 FOR UPDATE`, crl.IssuerID).Scan(&have); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if have != nil && crl.Number <= *have {
		return fmt.Errorf("CRL number %d is not greater than %d, the one published: %w", crl.Number, *have, ErrConflict)
	}
	if err := tx.QueryRow(ctx, `SELECT number FROM crl_numbers WHERE issuer_id = $1`, crl.IssuerID).Scan(&given); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if given == nil || crl.Number > *given {
		return fmt.Errorf("CRL number %d was never given out for %s: sign the CRL of a 'ca crl-request': %w", crl.Number, crl.IssuerID, ErrConflict)
	}
	_, err := tx.Exec(ctx, `INSERT INTO static_crls (issuer_id, number, der, next_update) VALUES ($1, $2, $3, $4)
		ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number, der = excluded.der, next_update = excluded.next_update`,
		crl.IssuerID, crl.Number, crl.DER, unix(crl.NextUpdate))
	return err
}

// StaticCRL returns the CRL kept for an issuer (ErrNotFound).
func (p *Postgres) StaticCRL(ctx context.Context, issuerID string) ([]byte, int64, time.Time, error) {
	var der []byte
	var number, next int64
	err := p.pool.QueryRow(ctx, `SELECT der, number, next_update FROM static_crls WHERE issuer_id = $1`, issuerID).Scan(&der, &number, &next)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, time.Time{}, ErrNotFound
	}
	return der, number, fromUnix(next), err
}

// DropGenerationKey records that a retired generation's key is gone.
func (p *Postgres) DropGenerationKey(ctx context.Context, id string, at time.Time) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE generations SET key_file = '' WHERE id = $1 AND state = $2`, id, string(StateRetired))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("generation %s is not retired: %w", id, ErrConflict)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sealed_keys WHERE id = $1`, id); err != nil {
			return err
		}
		return pgAddEvent(ctx, tx, EventGenerations, id, at)
	})
}

// SetGenerationState changes a generation's state.
func (p *Postgres) SetGenerationState(ctx context.Context, id string, st GenerationState) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE generations SET state = $1 WHERE id = $2`, string(st), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return pgAddEvent(ctx, tx, EventGenerations, id, time.Now())
	})
}

// ValidCounts counts, per issuer, the certificates valid at now, OCSP
// responder certificates aside.
func (p *Postgres) ValidCounts(ctx context.Context, now time.Time) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `SELECT issuer_id, count(*) FROM certificates
		WHERE not_after > $1 AND NOT revoked AND profile <> 'ocsp' GROUP BY issuer_id`, unix(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanCounts(rows)
}

// LatestNotAfter returns the latest notAfter of the certificates an
// issuer signed, its OCSP responder certificates aside.
func (p *Postgres) LatestNotAfter(ctx context.Context, issuerID string) (time.Time, error) {
	var n *int64
	if err := p.pool.QueryRow(ctx, `SELECT max(not_after) FROM certificates WHERE issuer_id = $1 AND profile <> 'ocsp'`, issuerID).Scan(&n); err != nil || n == nil {
		return time.Time{}, err
	}
	return fromUnix(*n), nil
}

// PutSealedKey keeps a CA generation's key, sealed (encrypted and
// authenticated) by the appliance under the key-encryption key the
// appliances sharing the database hold, so that the others can take it:
// the key of a generation made by a rollover on one appliance reaches the
// others this way. The database never sees the key in clear. A key is
// kept by its generation and the SHA-256 of its public key: two
// appliances that made a key for one generation at once keep both, and
// the one the recorded certificate names is the one taken. A generation
// whose key was taken offline or dropped takes none again.
func (p *Postgres) PutSealedKey(ctx context.Context, id string, spkiHash, sealed []byte) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO sealed_keys (id, spki_sha256, sealed)
		SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM generations WHERE id = $1 AND key_file = '')
		ON CONFLICT (id, spki_sha256) DO NOTHING`, id, spkiHash, sealed)
	return err
}

// SealedKey returns the sealed key of a generation whose public key has
// the SHA-256 spkiHash (ErrNotFound when none is kept: never given, taken
// offline, or dropped when it retired).
func (p *Postgres) SealedKey(ctx context.Context, id string, spkiHash []byte) ([]byte, error) {
	var sealed []byte
	err := p.pool.QueryRow(ctx, `SELECT sealed FROM sealed_keys WHERE id = $1 AND spki_sha256 = $2`, id, spkiHash).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return sealed, err
}

// ClaimKEK records fp as the fingerprint of the appliances'
// key-encryption key unless one is recorded already, and returns the one
// recorded.
func (p *Postgres) ClaimKEK(ctx context.Context, fp []byte) ([]byte, error) {
	if _, err := p.pool.Exec(ctx, `INSERT INTO kek (fingerprint) VALUES ($1) ON CONFLICT (one) DO NOTHING`, fp); err != nil {
		return nil, err
	}
	var got []byte
	err := p.pool.QueryRow(ctx, `SELECT fingerprint FROM kek`).Scan(&got)
	return got, err
}

// KEKFingerprint returns the recorded fingerprint of the key-encryption
// key (ErrNotFound when none is).
func (p *Postgres) KEKFingerprint(ctx context.Context) ([]byte, error) {
	var got []byte
	err := p.pool.QueryRow(ctx, `SELECT fingerprint FROM kek`).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return got, err
}
