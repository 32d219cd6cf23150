// Command dnsagent runs the DNS agent: it takes NOTIFY and Designate's CREATE/DELETE
// commands, pulls zones from the masters and applies them to a backend.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/service"
	"go.uber.org/zap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/dnsagent/agent.conf"

const usage = `dnsagent - a DNS agent for OpenStack Designate and other primaries

Usage:
  dnsagent [--config FILE] [--set S.O=V]...               run the agent
  dnsagent check-config [--config FILE] [--set S.O=V]...  validate the configuration and exit
  dnsagent send notify|create|delete ZONE --server HOST:PORT [--tcp] [--tsig [ALG:]NAME:SECRET] [--timeout D]
                                         send what Designate's worker sends, print the reply
  dnsagent send status|create|delete|resync|verify ZONE --http URL --token-file FILE
                [--cacert F] [--cert F --key F]  call the control API of a running agent
  dnsagent verify ZONE | --all [--config FILE]
                                         compare what the backend holds with the primary's
                                         zone: +/-/~ per RRset; exit 0 equal, 1 differs, 2 error
  dnsagent dump ZONE [--config FILE]     print the zone as the backend holds it (zone file)
  dnsagent resync ZONE [--config FILE]   transfer the zone and repair what the backend holds
  dnsagent --version | --help

Options:
  --config FILE  INI configuration (default %s; if that file does not exist,
                 built-in defaults and the environment are used)
  --set SECTION.OPTION=VALUE
                 override one option, above the environment and the file (repeat
                 for more), e.g. --set service:agent.listen=127.0.0.1:5358 or
                 --set agent:file.zone_file_path=/srv/zones

Control API (control_listen, bearer tokens from control_tokens_file):
  GET /v1/zones, GET|POST|DELETE /v1/zones/NAME, POST /v1/zones/NAME/resync,
  GET /v1/zones/NAME/verify

Signals: SIGTERM/SIGINT stop the agent (running transfers get shutdown_grace to finish,
then are abandoned, never half applied); SIGHUP re-reads allow_notify and allow_query
from the configuration file.

Every option can be overridden from the environment: option OPT of section
[SECTION:NAME] is DNSAGENT_SECTION_NAME_OPT, e.g. DNSAGENT_SERVICE_AGENT_LISTEN.
`

// setFlags collects the --set overrides in the order given.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "send":
			return send(args[1:], stdout, stderr)
		case "verify":
			return verifyCmd(args[1:], stdout, stderr)
		case "dump":
			return dumpCmd(args[1:], stdout, stderr)
		case "resync":
			return resyncCmd(args[1:], stdout, stderr)
		}
	}
	check := len(args) > 0 && args[0] == "check-config"
	if check {
		args = args[1:]
	}
	flags := flag.NewFlagSet("dnsagent", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {} // printed below, to stdout for --help and stderr for mistakes
	configPath := flags.String("config", "", "")
	showVersion := flags.Bool("version", false, "")
	var set setFlags
	flags.Var(&set, "set", "")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage, defaultConfig)
			return 0
		}
		fmt.Fprintf(stderr, usage, defaultConfig)
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "dnsagent: unexpected argument %q\n", flags.Arg(0))
		fmt.Fprintf(stderr, usage, defaultConfig)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "dnsagent", version)
		return 0
	}
	path := *configPath
	if path == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			path = defaultConfig
		}
	}

	load := service.Load
	if check {
		load = service.LoadToCheck
	}
	cfg, be, err := load(path, set...)
	if err != nil {
		fmt.Fprintf(stderr, "dnsagent: configuration %s:\n%v\n", displayPath(path), err)
		return 1
	}
	if check {
		if c, ok := be.(backend.Checker); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Check(ctx); err != nil {
				fmt.Fprintf(stdout, "warning: backend %s: %v\n", cfg.BackendDriver, err)
			}
		}
		fmt.Fprintf(stdout, "configuration %s is valid (backend %s)\n", displayPath(path), cfg.BackendDriver)
		return 0
	}
	log, err := service.NewLogger(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "dnsagent:", err)
		return 1
	}
	defer log.Sync() //nolint:errcheck // nothing to do if stderr is gone
	log.Info("starting", zap.String("version", version), zap.String("cpus", service.SetProcs(cfg)))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	agent := service.New(cfg, be, log)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			agent.ReloadAllowLists(path, set...)
		}
	}()
	if err := agent.Run(ctx); err != nil {
		log.Error("agent failed", zap.Error(err))
		return 1
	}
	return 0
}

func displayPath(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}
