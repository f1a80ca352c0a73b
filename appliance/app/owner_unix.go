//go:build unix

package app

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// copyOwner gives every file under root the owner of from, when this
// process runs as root: a restore made by root into a service's data
// directory leaves the files to the service's user, not to root.
func copyOwner(from, root string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(from)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(st.Uid), int(st.Gid))
	})
}
