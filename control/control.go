// Package control owns the agent's HTTP control API (control_listen, off by default): the
// zones the agent holds, create and delete as Designate's opcode 14 does, resync and
// verify. Every call is authenticated by a bearer token from control_tokens_file, allowed
// only from the control_allow networks, rate limited per source, optionally over TLS with
// client certificates, and written to the audit log as one line.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/zonecompare"
	"github.com/dnsagent/dnsagent/transfer"
)

// Engine is what the API asks of the transfer engine.
type Engine interface {
	StatusPage(state, after string, limit int) ([]transfer.Status, bool)
	Status(name string) (transfer.Status, bool)
	Resync(ctx context.Context, name string) (*zonecompare.Result, *transfer.Summary, error)
	Verify(ctx context.Context, name string) (*zonecompare.Result, error)
}

// Commands create and delete zones the way Designate's CREATE and DELETE do (through the
// catalog router when catalogs are consumed).
type Commands interface {
	Create(ctx context.Context, name string) error
	Delete(ctx context.Context, name string) error
}

// Server is the control API.
type Server struct {
	cfg           Config
	engine        Engine
	commands      Commands
	createTimeout time.Duration
	log           *zap.Logger // the audit log
	tokens        *tokenFile
	limit         *limiter
	now           func() time.Time
}

// New builds the API; the tokens file must hold at least one token.
func New(cfg Config, engine Engine, commands Commands, createTimeout time.Duration, log *zap.Logger) (*Server, error) {
	tokens, err := readTokens(cfg.TokensFile)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, engine: engine, commands: commands, createTimeout: createTimeout, log: log,
		tokens: &tokenFile{path: cfg.TokensFile, log: log, tokens: tokens}, now: time.Now,
		limit: &limiter{rate: cfg.RateLimit, buckets: map[netip.Addr]*bucket{}}}, nil
}

// call is one request as the audit log tells it.
type call struct {
	http.ResponseWriter
	status int
	reason string
}

func (c *call) WriteHeader(status int) {
	c.status = status
	c.ResponseWriter.WriteHeader(status)
}

// fail answers with a JSON error: {"error": reason}.
func fail(w http.ResponseWriter, status int, reason string) {
	if c, ok := w.(*call); ok {
		c.reason = reason
	}
	WriteJSON(w, status, map[string]string{"error": reason})
}

// WriteJSON answers with v as indented JSON; the agent's status endpoints use it too.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

// Zone status pages: a page of PageDefault zones is about 400 kB of JSON; 100,000 zones
// at once would be 40 MB, built in memory for one call.
const (
	PageDefault = 1000
	PageMax     = 10000
)

// Page reads ?state=&limit=&after= of a zone status listing at path and returns that
// page of pages, sorted by name: at most limit statuses after the zone named after. When
// more match, a Link header (RFC 8288, rel="next") gives the URL of the next page. A bad
// parameter is answered 400 here, and ok is false.
func Page(w http.ResponseWriter, r *http.Request, path string,
	pages func(state, after string, limit int) ([]transfer.Status, bool)) (page []transfer.Status, ok bool) {
	q := r.URL.Query()
	state, after := q.Get("state"), q.Get("after")
	if after != "" {
		after = backend.CanonicalZone(after)
	}
	if state != "" && !slices.Contains(transfer.ZoneStates, state) {
		WriteJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("state %q: want one of %s", state, strings.Join(transfer.ZoneStates, ", "))})
		return nil, false
	}
	limit := PageDefault
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > PageMax {
			WriteJSON(w, http.StatusBadRequest, map[string]string{
				"error": fmt.Sprintf("limit %q: want a number from 1 to %d", v, PageMax)})
			return nil, false
		}
		limit = n
	}
	page, more := pages(state, after, limit)
	if more && len(page) > 0 {
		next := url.Values{"after": {page[len(page)-1].Zone}, "limit": {strconv.Itoa(limit)}}
		if state != "" {
			next.Set("state", state)
		}
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", path, next.Encode()))
	}
	return page, true
}

// Handler checks who calls, then routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/zones", func(w http.ResponseWriter, r *http.Request) {
		page, ok := Page(w, r, "/v1/zones", s.engine.StatusPage)
		if ok {
			WriteJSON(w, http.StatusOK, page)
		}
	})
	mux.HandleFunc("GET /v1/zones/{name}", s.zone(s.status))
	mux.HandleFunc("POST /v1/zones/{name}", s.zone(s.create))
	mux.HandleFunc("DELETE /v1/zones/{name}", s.zone(s.delete))
	mux.HandleFunc("POST /v1/zones/{name}/resync", s.zone(s.resync))
	mux.HandleFunc("GET /v1/zones/{name}/verify", s.zone(s.verify))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		c := &call{ResponseWriter: w, status: http.StatusOK}
		who := s.admit(c, r)
		if who != "" {
			mux.ServeHTTP(c, r)
		}
		fields := []zap.Field{zap.String("source", r.RemoteAddr), zap.String("who", who),
			zap.String("method", r.Method), zap.String("path", r.URL.EscapedPath()), zap.Int("status", c.status),
			zap.Duration("duration", s.now().Sub(start))}
		if cn := clientCN(r); cn != "" {
			fields = append(fields, zap.String("client_cert", cn))
		}
		if c.reason != "" {
			fields = append(fields, zap.String("reason", c.reason))
		}
		s.log.Info("control API call", fields...)
	})
}

// admit checks the source, the rate, the client certificate and the token, in that order,
// and returns the token's name; "" when the call was refused (and answered).
func (s *Server) admit(w http.ResponseWriter, r *http.Request) string {
	source, err := netip.ParseAddrPort(r.RemoteAddr)
	switch {
	case err != nil || !s.cfg.Allow.Allows(source.Addr()):
		fail(w, http.StatusForbidden, "source address not in control_allow")
	case !s.limit.allow(source.Addr(), s.now()):
		fail(w, http.StatusTooManyRequests, "rate limit (control_rate_limit) exceeded")
	case s.cfg.ClientCA != "" && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0):
		fail(w, http.StatusForbidden, "a client certificate signed by control_tls_client_ca is required")
	default:
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dnsagent"`)
			fail(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer TOKEN)")
			return ""
		}
		name, ok := s.tokens.check(strings.TrimSpace(secret))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dnsagent", error="invalid_token"`)
			fail(w, http.StatusUnauthorized, "unknown bearer token")
			return ""
		}
		return name
	}
	return ""
}

func clientCN(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

// zone validates the zone name as opcode 14 does before calling h.
func (s *Server) zone(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := backend.CanonicalZone(r.PathValue("name"))
		if err := backend.ValidateZoneName(name); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		h(w, r, name)
	}
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request, name string) {
	st, ok := s.engine.Status(name)
	if !ok {
		fail(w, http.StatusNotFound, "zone "+name+" is not known to the agent")
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.createTimeout)
	defer cancel()
	if err := s.commands.Create(ctx, name); err != nil {
		fail(w, statusOf(err), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"zone": name, "result": "created"})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, name string) {
	if err := s.commands.Delete(r.Context(), name); err != nil {
		fail(w, statusOf(err), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"zone": name, "result": "deleted"})
}

// ResyncReply is the answer of POST /v1/zones/NAME/resync.
type ResyncReply struct {
	Zone       string              `json:"zone"`
	Apply      string              `json:"apply"` // none, diff or replace
	Reason     string              `json:"apply_reason,omitempty"`
	Deleted    int                 `json:"deleted"`
	Added      int                 `json:"added"`
	From       uint32              `json:"serial_from"`
	To         uint32              `json:"serial_to"`
	Master     string              `json:"master"`
	Difference *zonecompare.Result `json:"difference,omitempty"`
}

func (s *Server) resync(w http.ResponseWriter, r *http.Request, name string) {
	res, sum, err := s.engine.Resync(r.Context(), name)
	if err != nil {
		fail(w, statusOf(err), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, ResyncReply{Zone: name, Apply: sum.Path, Reason: sum.PathReason, Deleted: sum.Deleted,
		Added: sum.Added, From: sum.From, To: sum.To, Master: sum.Master, Difference: res})
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, name string) {
	res, err := s.engine.Verify(r.Context(), name)
	if err != nil {
		fail(w, statusOf(err), err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, backend.ErrNotFound), errors.Is(err, transfer.ErrUnknownZone):
		return http.StatusNotFound
	case errors.Is(err, backend.ErrNotOwned):
		return http.StatusConflict
	case errors.Is(err, transfer.ErrNoReader):
		return http.StatusNotImplemented
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// Serve runs the API on ln (TLS when configured) until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	tlsCfg, err := s.cfg.TLS()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: zap.NewStdLog(s.log)}
	stop := context.AfterFunc(ctx, func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown) //nolint:errcheck // closing anyway
	})
	defer stop()
	if tlsCfg != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// limiter is a token bucket per source address.
type limiter struct {
	rate    float64
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (l *limiter) allow(source netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := max(2*l.rate, 1) // a rate below one call in 2 s still lets a call through
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) > 10000 { // forget idle sources rather than grow without bound
			for a, old := range l.buckets {
				if now.Sub(old.last).Seconds()*l.rate >= burst {
					delete(l.buckets, a)
				}
			}
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
