// Command scaletool fills an appliance's certificate store with synthetic
// records and measures what depends on the store's size: the store's own
// status lookups and inserts, and OCSP answers over HTTP from a running
// appliance. bench/scale/run.sh drives it; it is a measuring tool, not
// part of the appliance.
//
//	scaletool fill    -db FILE -n N -sample FILE     add N certificate records
//	scaletool serials -db FILE -newest K -out FILE   serials of the newest leaves
//	scaletool ocsp    -base URL -serials FILE        OCSP GET latency, first and again
//	scaletool store   -db FILE -serials FILE         store lookups, inserts, b-tree shape
//
// Each prints one JSON object on standard output. Serial files hold one
// hexadecimal serial a line, as the store writes them.
package main

import (
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: scaletool fill|serials|ocsp|store [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) (any, error){
		"fill":    fill,
		"serials": serials,
		"ocsp":    ocspLatency,
		"store":   storeCosts,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "scaletool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	out, err := cmd(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "scaletool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "scaletool:", err)
		os.Exit(1)
	}
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s)) + 0.5)
		i = min(max(i-1, 0), len(s)-1)
		return ms(s[i])
	}
	return Percentiles{N: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(s[len(s)-1])}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round(x float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	if x >= 0 {
		return float64(int64(x*p+0.5)) / p
	}
	return -float64(int64(-x*p+0.5)) / p
}

// ioCounters are a process's counters from /proc/<pid>/io: bytes passed
// through read and write system calls (rchar, wchar) and the number of
// those calls (syscr, syscw), whether the OS page cache or the disk
// served them. SQLite reads and writes its database and WAL with pread
// and pwrite, a page (or a WAL frame header) at a time.
type ioCounters struct{ rchar, wchar, syscr, syscw int64 }

// procIO reads the counters of a process ("self" for this one).
func procIO(pid string) (ioCounters, error) {
	var c ioCounters
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return c, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "rchar":
			c.rchar = n
		case "wchar":
			c.wchar = n
		case "syscr":
			c.syscr = n
		case "syscw":
			c.syscw = n
		}
	}
	return c, nil
}

// per is the change of each counter from c0 to c1, per n operations.
func (c1 ioCounters) per(c0 ioCounters, n int) (rchar, wchar, syscr, syscw float64) {
	f := func(a, b int64) float64 { return round(float64(b-a)/float64(n), 1) }
	return f(c0.rchar, c1.rchar), f(c0.wchar, c1.wchar), f(c0.syscr, c1.syscr), f(c0.syscw, c1.syscw)
}

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readSerials reads a file of hexadecimal serials, one a line.
func readSerials(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no serials", path)
	}
	return out, nil
}

// parseSerials is the numbers of a list of hexadecimal serials.
func parseSerials(list []string) ([]*big.Int, error) {
	nums := make([]*big.Int, len(list))
	for i, s := range list {
		var ok bool
		if nums[i], ok = new(big.Int).SetString(s, 16); !ok {
			return nil, fmt.Errorf("bad serial %q", s)
		}
	}
	return nums, nil
}

// startCPUProfile starts a CPU profile of this process into the file at
// path; stop ends the profile and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
