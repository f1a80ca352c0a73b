package store

import (
	"context"
	"fmt"
	"os"

	"modernc.org/sqlite"
)

// Backup writes a consistent copy of the database, as of one moment, to
// the new file dst (mode 0600), with SQLite's online backup API: the
// appliance keeps issuing meanwhile. dst must not exist.
func (s *SQLite) Backup(ctx context.Context, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		b, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver has no backup API")
		}
		bk, err := b.NewBackup("file:" + dst)
		if err != nil {
			return err
		}
		// All pages in one step: one read transaction, so one moment.
		if _, err := bk.Step(-1); err != nil {
			bk.Finish()
			return err
		}
		return bk.Finish()
	})
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// AdvanceCRLNumbers adds by to every issuer's CRL number. After a
// restore the numbers of the backup may be behind CRLs already published
// since; a CRL number must only grow (RFC 5280 5.2.3), so the restored
// appliance jumps ahead of any it could have reached.
func (s *SQLite) AdvanceCRLNumbers(ctx context.Context, by int64) error {
	_, err := s.w.ExecContext(ctx, `UPDATE crl_numbers SET number = number + ?`, by)
	return err
}
