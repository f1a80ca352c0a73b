package main

import "testing"

func TestParseCPULine(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := parseCPULine("cpu  29635 10 7467 103255 757 3 715 1474 120 0")
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTimes{total: 29635 + 10 + 7467 + 103255 + 757 + 3 + 715 + 1474, idle: 103255 + 757, steal: 1474}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"",
		"cpu0 1 2 3 4 5 6 7 8",
		"cpu 1 2 3 4 5 6 7",
		"cpu 1 2 3 x 5 6 7 8",
		"cpu 1 2 3 4 5 6 7 -",
	} {
		if _, err := parseCPULine(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
