//go:build !unix

package app

// LockFile is the file in the data directory that one serve holds locked.
const LockFile = "serve.lock"

type dataLock struct{}

// lockDataDir does not lock where flock does not exist.
func lockDataDir(string) (*dataLock, error) { return &dataLock{}, nil }

func (l *dataLock) release() {}
