// Command agentprof is the agent (cmd/agent's run path: service.Load, service.New, Run)
// with profiling hooks for the benchmarks, so a profile of a slow case can be taken
// without touching the agent's code:
//
//   - BENCH_PPROF_LISTEN=127.0.0.1:PORT serves net/http/pprof there (heap, goroutines).
//   - BENCH_CPUPROFILE_DIR=DIR: each SIGUSR1 starts a CPU profile, the next one stops it
//     and writes DIR/cpu-N.pprof, so a profile covers exactly one transfer.
//
// The tables in RESULTS.md are measured with the real cmd/agent binary, not this one.
package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof" // the profiling endpoints, on BENCH_PPROF_LISTEN only
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/service"
)

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) != 3 || os.Args[1] != "--config" {
		fmt.Fprintln(os.Stderr, "usage: agentprof --config FILE")
		return 2
	}
	path := os.Args[2]
	cfg, be, err := service.Load(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentprof: configuration %s:\n%v\n", path, err)
		return 1
	}
	log, err := service.NewLogger(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentprof:", err)
		return 1
	}
	defer log.Sync() //nolint:errcheck // nothing to do if stderr is gone
	if addr := os.Getenv("BENCH_PPROF_LISTEN"); addr != "" {
		go func() {
			log.Info("pprof listening", zap.String("addr", addr), zap.Error(http.ListenAndServe(addr, nil)))
		}()
	}
	if dir := os.Getenv("BENCH_CPUPROFILE_DIR"); dir != "" {
		stopProfiles := cpuProfileToggle(dir, log)
		defer stopProfiles()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := service.New(cfg, be, log).Run(ctx); err != nil {
		log.Error("agent failed", zap.Error(err))
		return 1
	}
	return 0
}

// cpuProfileToggle starts a CPU profile on every odd SIGUSR1 and writes it out on the
// next one. The returned function stops the toggling and writes a profile still running.
func cpuProfileToggle(dir string, log *zap.Logger) func() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var f *os.File
		n := 0
		stopCPU := func() {
			if f != nil {
				pprof.StopCPUProfile()
				f.Close()
				log.Info("cpu profile written", zap.String("file", f.Name()))
				f = nil
			}
		}
		defer stopCPU()
		for {
			select {
			case <-done:
				return
			case <-usr1:
			}
			if f != nil {
				stopCPU()
				continue
			}
			n++
			var err error
			f, err = os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", n)))
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				log.Error("cpu profile", zap.Error(err))
				if f != nil {
					f.Close()
					f = nil
				}
			}
		}
	}()
	return func() {
		signal.Stop(usr1)
		close(done)
		<-finished
	}
}
