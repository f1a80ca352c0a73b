// Command walstat tells which b-trees a SQLite database's commits write:
// it reads the frames of the database's write-ahead log (FILE-wal, of
// the current WAL generation, up to its last commit), groups them by
// commit, and names each page's table or index with the dbstat virtual
// table.
//
//	walstat data/nmos-certs.db
//
// Copy the database and its WAL together while the appliance runs (a
// closed database has checkpointed and removed its WAL): a WAL restarts
// after each checkpoint, so it holds the commits since the last one.
package main

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	_ "modernc.org/sqlite"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: walstat DATABASE")
		os.Exit(2)
	}
	if err := run(os.Stdout, os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "walstat:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, dbPath string) error {
	wal, err := os.ReadFile(dbPath + "-wal")
	if err != nil {
		return err
	}
	commits, err := walCommits(wal)
	if err != nil {
		return err
	}
	if len(commits) == 0 {
		return errors.New("the WAL holds no commit")
	}
	names, err := pageNames(dbPath)
	if err != nil {
		return err
	}
	perTree := map[string]int{}
	frames := 0
	for _, c := range commits {
		for _, p := range c {
			name, ok := names[p]
			if !ok {
				name = "other"
			}
			perTree[name]++
			frames++
		}
	}
	trees := make([]string, 0, len(perTree))
	for t := range perTree {
		trees = append(trees, t)
	}
	sort.Slice(trees, func(i, j int) bool {
		if perTree[trees[i]] != perTree[trees[j]] {
			return perTree[trees[i]] > perTree[trees[j]]
		}
		return trees[i] < trees[j]
	})
	n := float64(len(commits))
	fmt.Fprintf(w, "%d commits, %.1f pages each\n", len(commits), float64(frames)/n)
	for _, t := range trees {
		fmt.Fprintf(w, "  %-50s %6.2f per commit\n", t, float64(perTree[t])/n)
	}
	return nil
}

// walCommits returns the page numbers each commit of the WAL's current
// generation wrote, in order. A frame belongs to the generation when its
// salts are the header's; frames after the last commit frame (a
// transaction being written) are left out.
func walCommits(wal []byte) ([][]uint32, error) {
	const hdr, frameHdr = 32, 24
	if len(wal) < hdr {
		return nil, errors.New("WAL shorter than its header")
	}
	if m := binary.BigEndian.Uint32(wal); m != 0x377f0682 && m != 0x377f0683 {
		return nil, fmt.Errorf("not a WAL (magic %#x)", m)
	}
	pageSize := int(binary.BigEndian.Uint32(wal[8:]))
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("WAL page size %d", pageSize)
	}
	salt1, salt2 := binary.BigEndian.Uint32(wal[16:]), binary.BigEndian.Uint32(wal[20:])
	var commits [][]uint32
	var cur []uint32
	for off := hdr; off+frameHdr+pageSize <= len(wal); off += frameHdr + pageSize {
		f := wal[off:]
		if binary.BigEndian.Uint32(f[8:]) != salt1 || binary.BigEndian.Uint32(f[12:]) != salt2 {
			break
		}
		cur = append(cur, binary.BigEndian.Uint32(f))
		if binary.BigEndian.Uint32(f[4:]) != 0 { // database size: a commit frame
			commits = append(commits, cur)
			cur = nil
		}
	}
	return commits, nil
}

// pageNames names every page of the database: "table/leaf",
// "index/internal" and so on, from dbstat. Pages dbstat does not list
// (free or overflow pages of no b-tree) are "other".
func pageNames(dbPath string) (map[uint32]string, error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, pageno, pagetype FROM dbstat`)
	if err != nil {
		return nil, fmt.Errorf("dbstat: %w", err)
	}
	defer rows.Close()
	names := map[uint32]string{}
	for rows.Next() {
		var name, kind string
		var page uint32
		if err := rows.Scan(&name, &page, &kind); err != nil {
			return nil, err
		}
		names[page] = name + "/" + kind
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return names, nil
}
