package service

import (
	"sort"

	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/backend/bind9"
	"github.com/dnsagent/dnsagent/backend/file"
	"github.com/dnsagent/dnsagent/backend/memory"
	"github.com/dnsagent/dnsagent/backend/powerdns"
	"github.com/dnsagent/dnsagent/config"
)

// A Driver opens one kind of backend from its `[agent:NAME]` section. It returns the
// backend and the section's query_destination (where queries for the zones are relayed;
// empty: nowhere). Every mistake in the options, and a backend that cannot be built from
// valid ones (a zone directory that cannot be created), is recorded in the section, once;
// the backend is then nil.
type Driver func(s *config.Section) (be backend.Backend, queryDestination string)

// Registry maps a backend_driver name to its driver: an explicit map, so the set of
// drivers is visible in one place.
type Registry map[string]Driver

// Backends are the drivers backend_driver can name.
var Backends = Registry{
	"file": func(s *config.Section) (backend.Backend, string) {
		cfg, dest := file.ConfigFrom(s), relayDestination(s)
		return build(s, cfg.Validate(), func() (backend.Backend, error) { return file.New(cfg) }), dest
	},
	"powerdns": func(s *config.Section) (backend.Backend, string) {
		cfg, dest := powerdns.ConfigFrom(s), relayDestination(s)
		return build(s, cfg.Validate(), func() (backend.Backend, error) { return powerdns.New(cfg) }), dest
	},
	// bind9 owns its query_destination: it reads serials and sends updates there too.
	"bind9": func(s *config.Section) (backend.Backend, string) {
		cfg := bind9.ConfigFrom(s)
		return build(s, cfg.Validate(), func() (backend.Backend, error) { return bind9.New(cfg, nil) }), cfg.QueryDestination
	},
	"memory": func(s *config.Section) (backend.Backend, string) {
		return memory.New(), relayDestination(s)
	},
}

// Names lists the registered drivers, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// build records the problems of a backend's options in s and builds the backend only
// from valid ones, so New does not report them a second time.
func build(s *config.Section, invalid error, newBackend func() (backend.Backend, error)) backend.Backend {
	if s.Check(invalid) {
		return nil
	}
	be, err := newBackend()
	if s.Check(err) {
		return nil
	}
	return be
}

// relayDestination reads query_destination for a backend that does not use it itself,
// as IP:port (a bare IP gets port 53, as masters do).
func relayDestination(s *config.Section) string {
	dest := s.String("query_destination", "")
	if dest == "" {
		return ""
	}
	ap, err := parseHostPort(dest, defaultMasterPort)
	if err != nil {
		s.Errorf("query_destination", "%v", err)
		return dest
	}
	return ap.String()
}
