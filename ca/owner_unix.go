//go:build unix

package ca

import (
	"os"
	"path/filepath"
	"syscall"
)

// matchDirOwner gives a file written by root the owner of its directory:
// a CLI command run with sudo beside the appliance must not leave a key
// the appliance's user cannot read.
func matchDirOwner(path string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		_ = os.Chown(path, int(st.Uid), int(st.Gid))
	}
}
