//go:build unix

package app

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// LockFile is the file in the data directory that one serve holds locked.
const LockFile = "serve.lock"

// dataLock is the lock of one serve on its data directory.
type dataLock struct{ f *os.File }

// lockDataDir takes the data directory for this process: one serve per
// data directory, since two would each take the database's writes and
// issue from the same keys with their own caches. The lock is an flock
// on data_dir/serve.lock, which the kernel drops when the process ends,
// however it ends; the file holds the holder's PID for the error.
func lockDataDir(dir string) (*dataLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil && len(bytes.TrimSpace(b)) > 0 {
			pid = string(bytes.TrimSpace(b))
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data_dir %s is in use by another nmos-certs serve (PID %s): one appliance per data directory; stop that one first", dir, pid)
		}
		return nil, fmt.Errorf("data_dir lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataLock{f: f}, nil
}

// release lets another serve take the directory.
func (l *dataLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close() // closing the descriptor drops the flock
		l.f = nil
	}
}
