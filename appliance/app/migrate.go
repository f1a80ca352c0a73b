package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// MigrateStore copies the SQLite store at sqlitePath into the empty
// PostgreSQL database of dsn, whole or not at all, and checks the counts
// of every table after. It holds the lock of the SQLite file's data
// directory meanwhile: the appliance serving it must be stopped, and
// cannot start until the copy ends.
func MigrateStore(ctx context.Context, sqlitePath, dsn string) (store.CopyCounts, error) {
	if _, err := os.Stat(sqlitePath); err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	// The serve lock: the appliance must not write during the copy (its
	// error says which process holds the directory).
	lock, err := lockDataDir(filepath.Dir(sqlitePath))
	if err != nil {
		return nil, err
	}
	defer lock.release()
	src, err := store.OpenSQLite(ctx, sqlitePath)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	return store.CopyToPostgres(ctx, src, dst)
}
