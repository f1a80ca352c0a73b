//go:build !linux

package store

import "os"

// fdatasync syncs the whole file where fdatasync(2) is not to be had.
func fdatasync(f *os.File, _ bool) error {
	return f.Sync()
}

// removed reports whether f's file has no name left; without a link
// count to ask, the name is checked.
func removed(f *os.File) bool {
	_, err := os.Stat(f.Name())
	return err != nil
}
