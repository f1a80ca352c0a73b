// Package webroot holds the operator web UI's assets, embedded in the
// binary.
package webroot

import (
	"embed"
	"io/fs"
)

//go:embed static templates
var files embed.FS

// FS returns the UI's files, rooted at the directory that holds index.html.
func FS() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	return sub
}
