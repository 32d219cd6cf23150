package service

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonediff"
	"github.com/dnsagent/dnsagent/catalog"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/control"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/dnsagent/dnsagent/tsigkey"
	"go.uber.org/zap/zapcore"
)

// Defaults (SPEC.md §5). The listen default is loopback, so the agent starts without an
// allow_notify list; a management-network listener must name who may notify it.
const (
	DefaultListen         = "127.0.0.1:5358"
	DefaultBackend        = "file"
	defaultMetricsListen  = "127.0.0.1:9358"
	defaultMasterPort     = 53
	defaultTCPBacklog     = 100
	defaultTCPRecvTimeout = 500 * time.Millisecond
	defaultCreateTimeout  = 20 * time.Second
	defaultWorkers        = 8
	defaultQueryTimeout   = 5 * time.Second
	defaultDialTimeout    = 5 * time.Second
	defaultStallTimeout   = 30 * time.Second
	defaultMaxDuration    = time.Hour
	// Sized for real zones: Designate zones hold thousands of records, the largest ones a
	// few hundred thousand; a 1M-record zone is about 41 MB on the wire.
	defaultMaxZoneRecords   = 2_000_000
	defaultMaxTransferBytes = 1 << 30
	defaultStartupSpread    = 30 * time.Second
	defaultMaxTCPPerSource  = 16
	refusalLogInterval      = 10 * time.Second
	defaultShutdownGrace    = 5 * time.Second
	defaultMinCheckInterval = 500 * time.Millisecond
	// defaultMaxChecksPerSecond is sized for Designate's MiniDNS: a Python service that
	// answers every SOA query and transfer from its database, one green thread at a time
	// per process, on the order of a few hundred SOA queries a second. 100 per agent
	// leaves room for the pool's other targets and Designate's own traffic, and still
	// checks 100,000 zones at start-up in under 20 minutes, and refreshes them every hour
	// (about 28 a second) with room for retries.
	defaultMaxChecksPerSecond = 100
)

// Config is [service:agent] with the query destination of the backend's section.
type Config struct {
	Listen           []string
	AllowNotify      middleware.ACL
	AllowQuery       middleware.ACL
	BackendDriver    string
	QueryDestination string
	TCPBacklog       int
	TCPRecvTimeout   time.Duration
	CreateTimeout    time.Duration
	LogLevel         zapcore.Level
	LogFormat        string
	MetricsListen    string          // HTTP endpoints; empty: off
	TSIGKeys         []*tsigkey.Key  // accepted on inbound requests (tsig_keys)
	RequireTSIG      map[string]bool // kinds of request that must be signed
	RateLimits       map[string]float64
	MaxTCPPerSource  int
	ShutdownGrace    time.Duration // how long running transfers may finish at SIGTERM
	CPUs             int           // GOMAXPROCS to run with (SetProcs); 0: automatic
	Transfer         transfer.Config
	Catalog          catalog.Config // catalog zones to consume (RFC 9432); none by default
	DiffIndexDir     string         // per-zone indexes for applying full zones as differences; empty: off
	DiffMaxRatio     float64        // a larger difference is applied as a full replace
	Control          control.Config // the HTTP control API; off unless control_listen is set
}

// DefaultDiffIndexDir is where the per-zone indexes live unless diff_index_dir says otherwise.
const DefaultDiffIndexDir = "/var/lib/dnsagent/index"

// ReadConfig reads [service:agent] from f, reporting bad values through f.
func ReadConfig(f *config.File) *Config {
	s := f.Section("service:agent")
	cfg := &Config{
		Listen:         s.List("listen"),
		BackendDriver:  s.String("backend_driver", DefaultBackend),
		TCPBacklog:     s.Int("tcp_backlog", defaultTCPBacklog, 1),
		TCPRecvTimeout: s.Seconds("tcp_recv_timeout", defaultTCPRecvTimeout),
		CreateTimeout:  s.Seconds("create_timeout", defaultCreateTimeout),
		LogFormat:      s.String("log_format", "console"),
		MetricsListen:  s.String("metrics_listen", defaultMetricsListen),
		CPUs:           s.Int("cpus", 0, 0),
		Transfer: transfer.Config{
			Masters:      readMasters(s),
			Workers:      s.Int("workers", defaultWorkers, 1),
			NotifyDelay:  s.Seconds("notify_delay", 0),
			DialTimeout:  s.Seconds("transfer_connect_timeout", defaultDialTimeout),
			StallTimeout: s.Seconds("transfer_stall_timeout", defaultStallTimeout),
			Key:          s.TSIGKey("masters_tsig_key"),
			MaxDuration:  s.Seconds("transfer_max_duration", defaultMaxDuration),
			MaxRecords:   s.Int("max_zone_records", defaultMaxZoneRecords, 0),
			MaxBytes:     s.Int("max_transfer_bytes", defaultMaxTransferBytes, 0),
			SpoolDir:     s.String("transfer_spool_dir", ""),
			// 0 means: use each zone's SOA refresh.
			RefreshInterval:  s.Seconds("refresh_interval", 0),
			RetryMin:         s.Seconds("retry_min", transfer.DefaultRetryMin),
			StartupSpread:    s.Seconds("startup_check_spread", defaultStartupSpread),
			MinCheckInterval: s.Seconds("min_check_interval", defaultMinCheckInterval),
			// 0: no cap.
			MaxChecksPerSecond: s.Int("max_checks_per_second", defaultMaxChecksPerSecond, 0),
		},
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{DefaultListen}
	}
	loopbackOnly := true
	for _, addr := range cfg.Listen {
		ap, err := parseHostPort(addr, -1)
		if err != nil {
			s.Errorf("listen", "%v", err)
			continue
		}
		loopbackOnly = loopbackOnly && ap.Addr().IsLoopback()
	}
	if cfg.MetricsListen != "" {
		if _, err := parseHostPort(cfg.MetricsListen, -1); err != nil {
			s.Errorf("metrics_listen", "%v", err)
		}
	}
	if source := s.String("transfer_source", ""); source != "" {
		addr, err := netip.ParseAddr(source)
		if err != nil {
			s.Errorf("transfer_source", "%q is not an IP address", source)
		}
		cfg.Transfer.Source = addr
	}
	cfg.TSIGKeys, cfg.RequireTSIG = readInboundTSIG(s)
	cfg.RateLimits = map[string]float64{
		middleware.KindNotify:  float64(s.Int("rate_limit_notify", 0, 0)),
		middleware.KindCommand: float64(s.Int("rate_limit_command", 0, 0)),
		middleware.KindQuery:   float64(s.Int("rate_limit_query", 0, 0)),
	}
	cfg.MaxTCPPerSource = s.Int("max_tcp_per_source", defaultMaxTCPPerSource, 0)
	cfg.ShutdownGrace = s.Seconds("shutdown_grace", defaultShutdownGrace)
	cfg.Catalog = readCatalog(s)
	cfg.Control = control.ReadConfig(s)
	cfg.DiffIndexDir = s.String("diff_index_dir", DefaultDiffIndexDir)
	cfg.DiffMaxRatio = zonediff.DefaultMaxRatio
	if v := s.String("diff_max_ratio", ""); v != "" {
		ratio, err := strconv.ParseFloat(v, 64)
		if err != nil || ratio < 0 || ratio > 1 {
			s.Errorf("diff_max_ratio", "%q: a share between 0 and 1, such as 0.3", v)
		}
		cfg.DiffMaxRatio = ratio
	}
	cfg.AllowNotify = readACL(s, "allow_notify")
	if cfg.AllowNotify.Empty() {
		if !loopbackOnly {
			s.Errorf("allow_notify", "empty while listening beyond loopback (%s): list the designate-worker "+
				"hosts (IPs or CIDRs) allowed to send NOTIFY and CREATE/DELETE, or set \"any\" to allow everyone",
				strings.Join(cfg.Listen, ", "))
		}
		cfg.AllowNotify = middleware.LoopbackACL()
	}
	cfg.AllowQuery = readACL(s, "allow_query")
	if cfg.AllowQuery.Empty() {
		cfg.AllowQuery = cfg.AllowNotify
	}
	level := s.String("log_level", "info")
	if err := cfg.LogLevel.UnmarshalText([]byte(level)); err != nil {
		s.Errorf("log_level", "%q: use debug, info, warn or error", level)
	}
	switch cfg.LogFormat {
	case "console", "json":
	default:
		s.Errorf("log_format", "%q: use console or json", cfg.LogFormat)
	}
	// Designate's agent sizes its pool of green threads with threads (designate/conf/
	// agent.py); read, so a [service:agent] copied from designate.conf loads, and unused:
	// goroutines need no pool, and workers bounds the transfers.
	s.Int("threads", 0, 0)
	if cfg.CreateTimeout <= 0 {
		s.Errorf("create_timeout", "must be more than 0")
	}
	if cfg.TCPRecvTimeout <= 0 {
		s.Errorf("tcp_recv_timeout", "must be more than 0: a TCP client gets this long for each request")
	}
	s.Check(cfg.Transfer.Validate())
	return cfg
}

// readInboundTSIG reads tsig_keys (the [tsig:NAME] keys accepted on requests; list two
// during a rotation) and require_tsig (notify, command, query).
func readInboundTSIG(s *config.Section) ([]*tsigkey.Key, map[string]bool) {
	keys := s.TSIGKeys("tsig_keys")
	require := map[string]bool{}
	for _, kind := range s.List("require_tsig") {
		switch kind {
		case middleware.KindNotify, middleware.KindCommand, middleware.KindQuery:
			require[kind] = true
		default:
			s.Errorf("require_tsig", "%q: use notify, command and/or query", kind)
		}
	}
	if len(require) > 0 && len(keys) == 0 {
		s.Errorf("require_tsig", "set, but tsig_keys names no key to verify with")
	}
	return keys, require
}

// readCatalog reads catalog_zones and the options of their consumption. The catalogs use
// the agent's masters and masters_tsig_key.
func readCatalog(s *config.Section) catalog.Config {
	cfg := catalog.Config{
		StateFile:      s.String("catalog_state_file", catalog.DefaultStateFile),
		MaxRemoval:     catalog.DefaultMaxRemoval,
		ConfirmRemoval: s.Bool("catalog_confirm_removal", false),
	}
	for _, name := range s.List("catalog_zones") {
		cfg.Zones = append(cfg.Zones, backend.CanonicalZone(name))
	}
	if v := s.String("catalog_max_removal", ""); v != "" {
		share, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err == nil && strings.HasSuffix(v, "%") {
			share /= 100
		}
		if err != nil {
			s.Errorf("catalog_max_removal", "%q is not a number (a share such as 0.5, or 50%%)", v)
		} else {
			cfg.MaxRemoval = share
		}
	}
	s.Check(cfg.Validate())
	return cfg
}

func readMasters(s *config.Section) []netip.AddrPort {
	var masters []netip.AddrPort
	for _, item := range s.List("masters") {
		ap, err := parseHostPort(item, defaultMasterPort)
		if err != nil {
			s.Errorf("masters", "%v", err)
			continue
		}
		masters = append(masters, ap)
	}
	return masters
}

func readACL(s *config.Section, key string) middleware.ACL {
	acl, err := middleware.ParseACL(s.List(key))
	if err != nil {
		s.Errorf(key, "%v", err)
	}
	return acl
}

// parseHostPort reads "IP:port" or "[IPv6]:port"; a bare IP gets defaultPort unless that
// is negative (the port is then required).
func parseHostPort(item string, defaultPort int) (netip.AddrPort, error) {
	if addr, err := netip.ParseAddr(strings.Trim(item, "[]")); err == nil && defaultPort >= 0 {
		return netip.AddrPortFrom(addr, uint16(defaultPort)), nil
	}
	host, port, err := net.SplitHostPort(item)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:port (write IPv6 as [addr]:port)", item)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", item, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not a port number", item, port)
	}
	return netip.AddrPortFrom(addr, uint16(n)), nil
}
