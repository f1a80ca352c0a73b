package app

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOneServePerDataDir: a second appliance on the same data directory
// is refused, naming the holder's PID, and may start once the first
// stopped.
func TestOneServePerDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	ctx, cancel := context.WithCancel(context.Background())
	first, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	_, err = New(context.Background(), testConfig(t, dir, ""), Options{})
	if err == nil || !strings.Contains(err.Error(), "PID "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), filepath.Join(dir, "data")) {
		t.Fatalf("second appliance on the same data directory: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	second := start(t, testConfig(t, dir, ""))
	if second.Addr("est") == nil {
		t.Fatal("no EST listener after the first stopped")
	}
}
