package backend

import (
	"fmt"
	"sort"

	"github.com/dnsagent/dnsagent/config"
)

// Constructor builds a backend from its `[agent:NAME]` configuration section.
type Constructor func(section *config.Section) (Backend, error)

// Registry maps a backend_driver name to its constructor. It is an explicit map, filled by
// the service, so the set of drivers is visible in one place.
type Registry map[string]Constructor

// New builds the named backend, or explains which drivers exist.
func (r Registry) New(driver string, section *config.Section) (Backend, error) {
	newBackend, ok := r[driver]
	if !ok {
		return nil, fmt.Errorf("[service:agent] backend_driver: unknown backend %q (known: %v)", driver, r.Names())
	}
	return newBackend(section)
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
