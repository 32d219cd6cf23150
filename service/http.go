package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/fanout"
	"github.com/dnsagent/dnsagent/catalog"
	"github.com/dnsagent/dnsagent/control"
	"github.com/dnsagent/dnsagent/transfer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// readyTimeout bounds the backend check behind /readyz.
const readyTimeout = 2 * time.Second

// httpHandler serves /metrics, /healthz, /readyz, /zones, /zones/NAME, /catalogs and
// /catalogs/NAME.
func (s *Service) httpHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.transfer.RegisterMetrics(reg)
	s.counters.Register(reg)
	reg.MustRegister(s.dropped)
	if s.catalogs != nil {
		s.catalogs.RegisterMetrics(reg)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /zones", s.zones)
	mux.HandleFunc("GET /zones/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := backend.CanonicalZone(r.PathValue("name"))
		st, ok := s.transfer.Status(name)
		if !ok {
			control.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "zone " + name + " is not known to the agent"})
			return
		}
		control.WriteJSON(w, http.StatusOK, s.zoneStatus(st))
	})
	mux.HandleFunc("GET /catalogs", func(w http.ResponseWriter, _ *http.Request) {
		statuses := []catalog.Status{}
		if s.catalogs != nil {
			statuses = s.catalogs.Statuses()
		}
		control.WriteJSON(w, http.StatusOK, statuses)
	})
	mux.HandleFunc("GET /catalogs/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := backend.CanonicalZone(r.PathValue("name"))
		if s.catalogs != nil {
			if st, ok := s.catalogs.Status(name); ok {
				control.WriteJSON(w, http.StatusOK, st)
				return
			}
		}
		control.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "catalog " + name + " is not consumed (catalog_zones)"})
	})
	return mux
}

// zoneStatus is a zone's status with, for a fan-out (several backend_driver), what
// each backend holds: the zone is fresh only when every one holds the primary's serial.
type zoneStatus struct {
	transfer.Status
	Backends map[string]fanout.Status `json:"backends,omitempty"`
}

func (s *Service) zoneStatus(st transfer.Status) zoneStatus {
	out := zoneStatus{Status: st}
	if fo, ok := s.backend.(*fanout.Backend); ok {
		out.Backends = fo.Status(st.Zone)
	}
	return out
}

// /zones pages: a page of zonesDefaultLimit zones is about 400 kB of JSON; 100,000
// zones at once would be 40 MB.
const (
	zonesDefaultLimit = 1000
	zonesMaxLimit     = 10000
)

// zones answers GET /zones?state=&limit=&after=: a JSON array of zone statuses sorted by
// name, at most limit of them after the zone named after. When more match, a Link header
// (RFC 8288, rel="next") gives the URL of the next page.
func (s *Service) zones(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, after := q.Get("state"), q.Get("after")
	if after != "" {
		after = backend.CanonicalZone(after)
	}
	if state != "" && !slices.Contains(transfer.ZoneStates, state) {
		control.WriteJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("state %q: want one of %s", state, strings.Join(transfer.ZoneStates, ", "))})
		return
	}
	limit := zonesDefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > zonesMaxLimit {
			control.WriteJSON(w, http.StatusBadRequest, map[string]string{
				"error": fmt.Sprintf("limit %q: want a number from 1 to %d", v, zonesMaxLimit)})
			return
		}
		limit = n
	}
	page, more := s.transfer.StatusPage(state, after, limit)
	if more && len(page) > 0 {
		next := url.Values{"after": {page[len(page)-1].Zone}, "limit": {strconv.Itoa(limit)}}
		if state != "" {
			next.Set("state", state)
		}
		w.Header().Set("Link", fmt.Sprintf("</zones?%s>; rel=\"next\"", next.Encode()))
	}
	out := make([]zoneStatus, len(page))
	for i, st := range page {
		out[i] = s.zoneStatus(st)
	}
	control.WriteJSON(w, http.StatusOK, out)
}

// readyz answers 200 once the listeners are bound and while the backend answers.
func (s *Service) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "listeners not bound yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if _, err := s.backend.Zones(ctx); err != nil {
		http.Error(w, "backend unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// serveHTTP runs the HTTP endpoints on metrics_listen until ctx ends.
func (s *Service) serveHTTP(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shutdown) //nolint:errcheck // closing anyway
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("HTTP endpoints stopped", zap.Error(err))
	}
}

// metricsURL is how the endpoints are announced in the log.
func metricsURL(ln net.Listener) string {
	return "http://" + strings.TrimSpace(ln.Addr().String())
}
