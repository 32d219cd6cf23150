// Package service wires the agent together: configuration, backend, transfer engine,
// middleware chain and the UDP and TCP listeners, and runs them until the context ends.
package service

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/fanout"
	"github.com/dnsagent/dnsagent/backend/zonediff"
	"github.com/dnsagent/dnsagent/catalog"
	"github.com/dnsagent/dnsagent/config"
	"github.com/dnsagent/dnsagent/control"
	"github.com/dnsagent/dnsagent/handler"
	"github.com/dnsagent/dnsagent/internal/rawudp"
	"github.com/dnsagent/dnsagent/middleware"
	"github.com/dnsagent/dnsagent/option"
	"github.com/dnsagent/dnsagent/request"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/dnsagent/dnsagent/tsigkey"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
)

// Load reads and checks the whole configuration and opens the backend (the fan-out over
// them when backend_driver lists several). The error lists every problem found, each
// naming its section and option.
// set overrides options, SECTION.OPTION=VALUE (config.File.Set).
func Load(path string, set ...string) (*Config, backend.Backend, error) {
	return load(path, set, forAgent)
}

// LoadToCheck is Load for dnsagent check-config, which may run beside an agent: the index
// directories are created and checked, but the temp files in them are left alone.
func LoadToCheck(path string, set ...string) (*Config, backend.Backend, error) {
	return load(path, set, forCheck)
}

// LoadForTool is Load for the command-line tools that run beside an agent (verify, dump,
// resync): the index directories are neither created nor swept, as the agent may be
// writing in them.
func LoadForTool(path string, set ...string) (*Config, backend.Backend, error) {
	return load(path, set, forTool)
}

// loadMode says who loads the configuration, and so what may be done to the diff index.
type loadMode int

const (
	forAgent loadMode = iota // create, check, sweep an interrupted run's temp files
	forCheck                 // create and check
	forTool                  // leave alone
)

func load(path string, set []string, mode loadMode) (*Config, backend.Backend, error) {
	f, err := loadFile(path, set)
	if err != nil {
		return nil, nil, err
	}
	cfg := ReadConfig(f)
	svc := f.Section("service:agent")
	if len(cfg.Catalog.Zones) > 0 {
		if err := catalog.CheckStateFile(cfg.Catalog.StateFile); err != nil {
			svc.Check(option.Errorf("catalog_state_file", "%v", err))
		}
	}
	var drivers []string
	for _, driver := range strings.Split(cfg.BackendDriver, ",") {
		driver = strings.TrimSpace(driver)
		if _, ok := Backends[driver]; !ok {
			svc.Errorf("backend_driver", "unknown backend %q (known: %v)", driver, Backends.Names())
			continue
		}
		if slices.Contains(drivers, driver) {
			svc.Errorf("backend_driver", "backend %q is listed twice", driver)
			continue
		}
		drivers = append(drivers, driver)
	}
	var be backend.Backend
	switch {
	case len(drivers) == 1:
		if cfg.DiffIndexDir != "" {
			cfg.Transfer.Index = openIndex(svc, cfg.DiffIndexDir, cfg.DiffMaxRatio, mode)
		}
		be, cfg.QueryDestination = Backends[drivers[0]](backendSection(f, drivers[0]))
	case len(drivers) > 1:
		be = openFanout(f, cfg, drivers, mode)
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	return cfg, be, nil
}

func backendSection(f *config.File, driver string) *config.Section {
	return f.Section("agent:"+driver, "backend:agent:"+driver)
}

// openIndex opens a diff index directory, reporting a problem as diff_index_dir's. Only
// the agent sweeps it: a tool or check-config may run beside an agent writing temp files.
func openIndex(svc *config.Section, dir string, maxRatio float64, mode loadMode) *zonediff.Index {
	open := zonediff.Open
	switch mode {
	case forTool:
		return zonediff.At(dir, maxRatio)
	case forCheck:
		open = zonediff.Check
	}
	idx, err := open(dir, maxRatio)
	if err != nil {
		svc.Check(option.Errorf("diff_index_dir", "%v", err))
	}
	return idx
}

// openFanout builds every listed backend and the fan-out over them; nil if one cannot be
// built (the problems are recorded). Each member has its own diff index, in
// diff_index_dir/DRIVER: members may hold different versions of a zone. The engine then
// has none; the fan-out applies full zones through the members' indexes. With several
// backends, queries go to the first query_destination that is set.
func openFanout(f *config.File, cfg *Config, drivers []string, mode loadMode) backend.Backend {
	svc := f.Section("service:agent")
	var members []fanout.Member
	failed := false
	for _, driver := range drivers {
		be, dest := Backends[driver](backendSection(f, driver))
		if be == nil {
			failed = true
			continue
		}
		if cfg.QueryDestination == "" {
			cfg.QueryDestination = dest
		}
		m := fanout.Member{Name: driver, Backend: be}
		if cfg.DiffIndexDir != "" {
			// Check reports a broken diff_index_dir once, not once per member.
			m.Index = openIndex(svc, filepath.Join(cfg.DiffIndexDir, driver), cfg.DiffMaxRatio, mode)
		}
		members = append(members, m)
	}
	if failed {
		return nil
	}
	fo, err := fanout.New(members)
	if err != nil {
		svc.Errorf("backend_driver", "%v", err)
		return nil
	}
	return fo
}

// Service is a configured agent, ready to Run.
type Service struct {
	cfg      *Config
	log      *zap.Logger
	backend  backend.Backend
	transfer *transfer.Manager
	catalogs *catalog.Consumer // nil unless catalog_zones is set
	allow    *middleware.AllowLists
	handler  request.Handler
	fast     *fastQueries           // nil: every query takes the chain
	udpMu    sync.Mutex             // guards udp: a SIGHUP may come while Run binds
	udp      []*udpListener         // steered by the allow lists (steer.go)
	commands control.Commands       // CREATE and DELETE, through the catalog router if any
	ready    atomic.Bool            // the DNS listeners are bound
	poller   *rawudp.Poller         // reads the UDP listeners and the relay's upstream sockets, from one goroutine
	counters *middleware.Counters   // the request path's, this agent's own (httpHandler registers them)
	dropped  *prometheus.CounterVec // udp_dropped_total: datagrams the UDP gates' queues had no room for
}

// New builds the agent around a backend.
func New(cfg *Config, be backend.Backend, log *zap.Logger) *Service {
	manager := transfer.NewManager(cfg.Transfer, be, log.Named("transfer"))
	allow := middleware.NewAllowLists(cfg.AllowNotify, cfg.AllowQuery)
	s := &Service{cfg: cfg, log: log, backend: be, transfer: manager, allow: allow, poller: new(rawudp.Poller),
		counters: middleware.NewCounters(), dropped: newDroppedCounter()}
	var zones handler.Zones = manager
	if len(cfg.Catalog.Zones) > 0 {
		// Catalogs get an engine of their own (same masters and key); NOTIFYs for them and
		// for their members not created yet are routed by the consumer.
		s.catalogs = catalog.New(cfg.Catalog, cfg.Transfer, manager, be, log.Named("catalog"))
		zones = s.catalogs.Router()
	}
	s.handler, s.fast = newRequestPath(cfg, zones, allow, s.poller, s.counters, log)
	s.commands = zones
	return s
}

// NewHandler builds the request path: the middleware chain in front of the handler.
func NewHandler(cfg *Config, zones handler.Zones, allow *middleware.AllowLists, log *zap.Logger) request.Handler {
	h, _ := newRequestPath(cfg, zones, allow, nil, middleware.NewCounters(), log)
	return h
}

// newRequestPath builds the middleware chain in front of the handler, and the UDP query
// fast path that shares its allow lists, rate limiter, query slots, counters and request
// log (nil when queries are not relayed, or must be signed). poller reads the relay's UDP
// sockets (nil: the relay's own).
func newRequestPath(cfg *Config, zones handler.Zones, allow *middleware.AllowLists, poller *rawudp.Poller,
	counters *middleware.Counters, log *zap.Logger) (request.Handler, *fastQueries) {
	h := &handler.Handler{Zones: zones, CreateTimeout: cfg.CreateTimeout}
	if cfg.QueryDestination != "" {
		h.Forward = &handler.Forwarder{Destination: cfg.QueryDestination, Timeout: defaultQueryTimeout, Poller: poller}
	}
	limiter := middleware.NewLimiter(cfg.RateLimits, counters, log.Named("ratelimit"), refusalLogInterval, time.Now)
	requests := middleware.NewRequestLog(log.Named("request"), refusalLogInterval, time.Now)
	querySlots := middleware.NewSlots(maxQueriesServing)
	chain := middleware.Chain(h,
		middleware.Metadata(time.Now),
		middleware.Logging(requests),
		middleware.Metrics(counters),
		middleware.Recover(log),
		middleware.RateLimit(limiter),
		middleware.Validate(),
		// TSIG before the allow lists: a verified request's REFUSED is signed (RFC 8945
		// §5.3), as BIND's is; the BADKEY/BADSIG answers to strangers are the RFC's too.
		middleware.TSIG(cfg.RequireTSIG, tsigAlgorithms(cfg.TSIGKeys), time.Now),
		middleware.Allow(allow, log.Named("acl"), refusalLogInterval, time.Now),
		middleware.Busy(map[string]middleware.Slots{middleware.KindCommand: middleware.NewSlots(maxCommandsServing),
			middleware.KindQuery: querySlots}),
	)
	if h.Forward == nil || cfg.RequireTSIG[middleware.KindQuery] {
		return chain, nil
	}
	return chain, &fastQueries{relay: h.Forward.Relay(), allow: allow, limit: limiter, slots: querySlots,
		counters: counters, log: requests}
}

// loadFile reads the configuration file with the overrides of set.
func loadFile(path string, set []string) (*config.File, error) {
	f, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return f, f.Set(set)
}

// ReloadAllowLists re-reads allow_notify and allow_query from the configuration file
// (on SIGHUP), with the same overrides set as at start. A file with errors changes
// nothing; the errors are logged.
func (s *Service) ReloadAllowLists(path string, set ...string) {
	// Only [service:agent] is read again: the overrides of other sections would be
	// reported as options nobody reads.
	set = slices.DeleteFunc(slices.Clone(set), func(item string) bool {
		return !strings.HasPrefix(strings.ToLower(strings.TrimSpace(item)), "service:agent.")
	})
	f, err := loadFile(path, set)
	if err != nil {
		s.log.Error("reload: allow lists kept", zap.Error(err))
		return
	}
	cfg := ReadConfig(f)
	if err := f.Err(); err != nil {
		s.log.Error("reload: configuration has errors; allow lists kept", zap.Error(err))
		return
	}
	s.allow.Set(cfg.AllowNotify, cfg.AllowQuery)
	s.udpMu.Lock()
	for _, udp := range s.udp {
		if err := udp.steer(s.allow.Entries()); err != nil {
			s.log.Error("reload: UDP sources still steered by the old allow lists", zap.Error(err))
		}
	}
	s.udpMu.Unlock()
	s.log.Info("reload: allow lists replaced", zap.Stringer("allow_notify", cfg.AllowNotify),
		zap.Stringer("allow_query", cfg.AllowQuery))
}

// Run binds every listen address over UDP and TCP and serves until ctx ends; then it
// stops accepting, lets requests in flight end, gives running transfers shutdown_grace to
// finish and cancels the rest (a cancelled transfer is never applied). A listener that
// cannot bind fails Run.
func (s *Service) Run(ctx context.Context) error {
	defer s.transfer.Shutdown(s.cfg.ShutdownGrace)
	if s.catalogs != nil {
		defer s.catalogs.Close() // before the main engine: it creates and deletes through it
	}
	// Work Run starts in the background (startEngines) ends before the engines stop.
	ctx, cancel := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer background.Wait()
	defer cancel()
	var metricsLn net.Listener
	if s.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen %s: %w", s.cfg.MetricsListen, err)
		}
		metricsLn = ln
	}
	if sweeper, ok := s.backend.(backend.Sweeper); ok {
		if err := sweeper.Sweep(ctx); err != nil {
			s.log.Warn("backend start-up housekeeping failed; running on", zap.Error(err))
		}
	}
	var controlLn net.Listener
	if s.cfg.Control.Listen != "" {
		ln, err := net.Listen("tcp", s.cfg.Control.Listen)
		if err != nil {
			if metricsLn != nil {
				metricsLn.Close()
			}
			return fmt.Errorf("control_listen %s: %w", s.cfg.Control.Listen, err)
		}
		defer ln.Close()
		controlLn = ln
	}
	servers, err := s.listen(ctx)
	if err == nil {
		if err = s.startEngines(ctx, &background); err != nil {
			closeListeners(servers)
		}
	}
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	s.ready.Store(true)
	if metricsLn != nil {
		go s.serveHTTP(ctx, metricsLn)
		s.log.Info("HTTP endpoints", zap.String("url", metricsURL(metricsLn)))
	}
	if controlLn != nil {
		if err := s.serveControl(ctx, controlLn); err != nil {
			closeListeners(servers)
			return err
		}
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	s.log.Info("listening", zap.Strings("listen", s.cfg.Listen), zap.Stringer("allow_notify", s.cfg.AllowNotify),
		zap.String("backend", s.cfg.BackendDriver))

	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("listener stopped: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.ShutdownContext(shutdown) //nolint:errcheck // a server that failed is already down
	}
	s.log.Info("stopped")
	return err
}

// startEngines schedules the start-up check of every zone the backend holds
// (transfer.Start), then starts the catalog consumers. A backend that cannot list its
// zones yet (MariaDB still starting at boot) does not stop the agent: it serves meanwhile
// (/readyz says the backend is unreachable) and lists them again in the background, the
// wait doubling from 1 s to 30 s, until it can or ctx ends. Exiting would leave the
// retries to systemd, whose default start limit gives up after five starts in 10 s.
func (s *Service) startEngines(ctx context.Context, background *sync.WaitGroup) error {
	err := s.transfer.Start(ctx)
	if err == nil {
		return s.startCatalogs(ctx)
	}
	if ctx.Err() != nil {
		return err
	}
	wait := time.Second
	s.log.Warn("cannot list the backend's zones; serving, and trying again", zap.Error(err), zap.Duration("in", wait))
	background.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			err := s.transfer.Start(ctx)
			if err == nil {
				if err := s.startCatalogs(ctx); err != nil {
					s.log.Error("catalog consumers not started", zap.Error(err))
				}
				return
			}
			wait = min(2*wait, 30*time.Second)
			if ctx.Err() == nil {
				s.log.Warn("cannot list the backend's zones; trying again", zap.Error(err), zap.Duration("in", wait))
			}
		}
	})
	return nil
}

func (s *Service) startCatalogs(ctx context.Context) error {
	if s.catalogs == nil {
		return nil
	}
	return s.catalogs.Start(ctx)
}

// serveControl starts the control API on ln; it stops when ctx ends.
func (s *Service) serveControl(ctx context.Context, ln net.Listener) error {
	api, err := control.New(s.cfg.Control, s.transfer, s.commands, s.cfg.CreateTimeout, s.log.Named("audit"))
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	go func() {
		if err := api.Serve(ctx, ln); err != nil {
			s.log.Error("control API stopped", zap.Error(err))
		}
	}()
	s.log.Info("control API", zap.String("listen", ln.Addr().String()), zap.Bool("tls", s.cfg.Control.TLSCert != ""),
		zap.Stringer("allow", s.cfg.Control.Allow))
	return nil
}

func (s *Service) listen(ctx context.Context) ([]*dns.Server, error) {
	base := middleware.Server{Base: ctx, Handler: s.handler}
	var servers []*dns.Server
	closeAll := func() {
		closeListeners(servers)
		s.udpMu.Lock()
		for _, udp := range s.udp {
			udp.Close()
		}
		s.udpMu.Unlock()
	}
	for _, addr := range s.cfg.Listen {
		udp, err := listenUDP(addr, s.allow.Entries())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen %s/udp: %w", addr, err)
		}
		if udp.unsteered != nil {
			s.log.Warn("one UDP socket for every source: a flood fills the receive queue allowed sources share",
				zap.String("listen", addr), zap.Error(udp.unsteered))
		}
		s.udpMu.Lock()
		s.udp = append(s.udp, udp)
		s.udpMu.Unlock()
		gated, err := s.udpServers(udp, base)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen %s/udp: %w", addr, err)
		}
		servers = append(servers, gated...)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen %s/tcp: %w", addr, err)
		}
		// tcp_backlog: at most this many TCP connections are served at once; more wait in
		// the kernel's accept queue.
		ln = netutil.LimitListener(limitSources(ln, s.cfg.MaxTCPPerSource, strangerTCPSlots(s.cfg.TCPBacklog), s.allow.Known, s.log), s.cfg.TCPBacklog)
		servers = append(servers, s.server(&dns.Server{Listener: ln, Handler: base}, nil))
	}
	return servers, nil
}

// closeListeners releases the sockets of servers that were never started.
func closeListeners(servers []*dns.Server) {
	for _, srv := range servers {
		if srv.PacketConn != nil {
			srv.PacketConn.Close()
		} else {
			srv.Listener.Close()
		}
	}
}

// tsigAlgorithms maps each inbound key to its algorithm.
func tsigAlgorithms(keys []*tsigkey.Key) map[string]string {
	algorithms := map[string]string{}
	for _, k := range keys {
		algorithms[tsigkey.CanonicalName(k.Name)] = k.Algorithm
	}
	return algorithms
}

// udpServers serve h on udp behind a request gate (udpgate.go): one server for the
// allowed sources, one for the others.
func (s *Service) udpServers(udp *udpListener, h dns.Handler) ([]*dns.Server, error) {
	limit := middleware.NewLimiter(gateLimits, s.counters, s.log.Named("udp"), refusalLogInterval, time.Now)
	gate, err := newUDPGate(udp.conns, s.allow.Known, limit, s.dropped, s.poller)
	if err != nil {
		return nil, err
	}
	if s.fast != nil {
		gate.fast = s.fast.serve
	}
	var servers []*dns.Server
	for _, lane := range gate.lanes {
		srv := &dns.Server{PacketConn: gate.PacketConn(), Handler: gatedHandler{h, lane}, DecorateReader: lane.Decorate}
		servers = append(servers, s.server(srv, lane))
	}
	return servers, nil
}

// server sets up srv; lane is a UDP server's lane of its request gate, nil for TCP.
func (s *Service) server(srv *dns.Server, lane *gateLane) *dns.Server {
	srv.MsgAcceptFunc = middleware.AcceptRequests
	if len(s.cfg.TSIGKeys) > 0 {
		srv.TsigProvider = tsigkey.NewProvider(s.cfg.TSIGKeys)
	}
	if lane == nil {
		// tcp_recv_timeout bounds both the wait for a request and the idle time between
		// pipelined requests, so a silent client cannot hold a connection slot.
		srv.ReadTimeout = s.cfg.TCPRecvTimeout
		srv.IdleTimeout = func() time.Duration { return s.cfg.TCPRecvTimeout }
	}
	srv.MsgInvalidFunc = func(m []byte, err error) {
		if lane != nil {
			defer lane.release() // the datagram ends here: no handler runs
		}
		s.counters.Malformed()
		s.log.Debug("malformed message", zap.Int("bytes", len(m)), zap.Error(err))
	}
	return srv
}

// gatedHandler gives the gate's slot back once the request is served.
type gatedHandler struct {
	dns.Handler
	lane *gateLane
}

func (h gatedHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer h.lane.release()
	h.Handler.ServeDNS(w, r)
}
