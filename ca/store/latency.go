package store

import (
	"math"
	"sync/atomic"
	"time"
)

// CommitBuckets are the upper bounds, in seconds, of the commit-latency
// histogram: 0.5 ms to about 4 s, doubling.
var CommitBuckets = func() []float64 {
	b := make([]float64, 14)
	for i := range b {
		b[i] = 0.0005 * math.Pow(2, float64(i))
	}
	return b
}()

// latency is a histogram of durations, cheap enough for the writer's hot
// path: one atomic add per observation and bucket found.
type latency struct {
	counts [15]atomic.Uint64 // per bucket of CommitBuckets, then +Inf
	sumNs  atomic.Int64
}

func (l *latency) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(CommitBuckets) && s > CommitBuckets[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sumNs.Add(int64(d))
}

// snapshot returns the cumulative count per upper bound, the count and
// the sum in seconds, as prometheus.MustNewConstHistogram takes them.
func (l *latency) snapshot() (map[float64]uint64, uint64, float64) {
	buckets := make(map[float64]uint64, len(CommitBuckets))
	var n uint64
	for i, ub := range CommitBuckets {
		n += l.counts[i].Load()
		buckets[ub] = n
	}
	n += l.counts[len(CommitBuckets)].Load()
	return buckets, n, time.Duration(l.sumNs.Load()).Seconds()
}
