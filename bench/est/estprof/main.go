// Command estprof runs the appliance in process, exactly as
// "nmos-certs serve --config FILE" builds it, with the Go profiler served
// on a loopback address, so that it can be profiled under load without
// adding anything to the product:
//
//	estprof -config bench.yaml -pprof 127.0.0.1:6060 &
//	estload ... -d 20s &
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=15
//
// Block and mutex profiling are off unless -block-rate or -mutex-fraction
// are set (they cost time themselves).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
)

func main() {
	cfgPath := flag.String("config", "", "appliance configuration file")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "loopback `address` of the profiler (/debug/pprof/)")
	blockRate := flag.Int("block-rate", 0, "runtime.SetBlockProfileRate (0: off)")
	mutexFraction := flag.Int("mutex-fraction", 0, "runtime.SetMutexProfileFraction (0: off)")
	flag.Parse()
	if err := run(*cfgPath, *pprofAddr, *blockRate, *mutexFraction); err != nil {
		fmt.Fprintln(os.Stderr, "estprof:", err)
		os.Exit(1)
	}
}

func run(cfgPath, pprofAddr string, blockRate, mutexFraction int) error {
	if cfgPath == "" {
		return errors.New("-config is required")
	}
	host, _, err := net.SplitHostPort(pprofAddr)
	if err != nil {
		return fmt.Errorf("-pprof: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-pprof %s: give a loopback IP address", pprofAddr)
	}
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return err
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	runtime.SetBlockProfileRate(blockRate)
	runtime.SetMutexProfileFraction(mutexFraction)

	l, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return fmt.Errorf("-pprof: %w", err)
	}
	go func() { _ = http.Serve(l, http.DefaultServeMux) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, app.Options{Logger: logger})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
