//go:build !linux

package app

// setCork does nothing where TCP_CORK does not exist.
func setCork(uintptr) {}
