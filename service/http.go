package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// zones answers GET /zones?state=&limit=&after=: a page of zone statuses (control.Page).
func (s *Service) zones(w http.ResponseWriter, r *http.Request) {
	page, ok := control.Page(w, r, "/zones", s.transfer.StatusPage)
	if !ok {
		return
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
