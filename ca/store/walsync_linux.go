package store

import (
	"os"
	"syscall"
)

// fdatasync syncs f's data. With holdP it is a raw system call, which the
// Go runtime does not see: the calling thread keeps its P throughout, as
// it does for any short computation.
func fdatasync(f *os.File, holdP bool) error {
	fd := f.Fd()
	var errno syscall.Errno
	for {
		if holdP {
			_, _, errno = syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0)
		} else {
			_, _, errno = syscall.Syscall(syscall.SYS_FDATASYNC, fd, 0, 0)
		}
		if errno != syscall.EINTR {
			break
		}
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// removed reports whether f's file has no name left.
func removed(f *os.File) bool {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return true
	}
	return st.Nlink == 0
}
