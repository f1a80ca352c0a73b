//go:build !unix

package app

func copyOwner(from, root string) error { return nil }
