// Package backend owns the contract between the transfer engine and the plugins that store
// zones (file, bind9, powerdns, memory), and the registry that maps a backend_driver name
// to its constructor.
package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ErrNotFound is returned (wrapped) when a zone is not held by the backend.
var ErrNotFound = errors.New("zone not found")

// ErrNotOwned is returned (wrapped) when the server holds a zone the agent did not create
// (for example one defined in named.conf); the agent must not touch it.
var ErrNotOwned = errors.New("zone exists but is not managed by the agent")

// Source yields a zone's records in wire order, in batches, starting with the SOA. Next
// returns io.EOF after the last batch. Any other error means the transfer failed: the
// backend must then discard what it received and keep the previous version of the zone.
type Source interface {
	Next() ([]dns.RR, error)
}

// Interrupter is a Source that may block in Next (a transfer waiting for its primary) and
// that another goroutine can make fail there: a reader that stops early frees its
// goroutine still reading the source this way. Unlike closing the source, Interrupt may
// run while Next does.
type Interrupter interface {
	Interrupt()
}

// Backend stores zones. Zone names are lowercase, fully qualified ("example.com.") and
// have passed ValidateZoneName. A backend must never expose a partly written zone: it
// holds either the old complete version or the new complete one.
type Backend interface {
	// Serial returns the SOA serial of the stored zone, or ErrNotFound.
	Serial(ctx context.Context, zone string) (uint32, error)
	// Create stores a zone that does not exist yet from a complete record stream.
	Create(ctx context.Context, zone string, src Source) error
	// Replace swaps an existing zone for the complete record stream.
	Replace(ctx context.Context, zone string, src Source) error
	// Delete removes the zone and every trace the agent left of it, or returns ErrNotFound.
	Delete(ctx context.Context, zone string) error
	// Zones lists the zones the agent manages in this backend.
	Zones(ctx context.Context) ([]string, error)
}

// ValidateZoneName accepts the names a zone may have in a backend: lowercase-insensitive
// letters, digits, hyphens and underscores in non-empty labels, fully qualified, not the
// root. Anything else (quotes, braces, slashes, spaces, "..") could end up in a path, an
// rndc argument or a SQL row, so it is refused with a reason.
func ValidateZoneName(zone string) error {
	if zone == "." || zone == "" {
		return fmt.Errorf("zone name %q: the root zone cannot be managed", zone)
	}
	if !strings.HasSuffix(zone, ".") {
		return fmt.Errorf("zone name %q: not fully qualified", zone)
	}
	if len(zone) > 254 {
		return fmt.Errorf("zone name %q: longer than 253 characters", zone)
	}
	for _, label := range strings.Split(strings.TrimSuffix(zone, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("zone name %q: empty or over-long label", zone)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			// Not a hostname label (RFC 952), and "-rf" would look like an option to a
			// reload_command.
			return fmt.Errorf("zone name %q: a label may not start or end with '-'", zone)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("zone name %q: character %q is not allowed in a zone name", zone, c)
			}
		}
	}
	return nil
}

// CanonicalZone returns the form zone names take inside the agent: lowercase, fully qualified.
func CanonicalZone(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// CheckZone is how every backend operation begins: it refuses a name ValidateZoneName
// refuses (it could escape a directory, change an rndc command or a SQL row), saying which
// backend and operation, and returns the name canonical, so one zone has one name (one
// file, one row) whatever case it came in.
func CheckZone(backendName, op, zone string) (string, error) {
	if err := ValidateZoneName(zone); err != nil {
		return "", fmt.Errorf("%s backend: %s: %w", backendName, op, err)
	}
	return CanonicalZone(zone), nil
}

// Checker is the optional capability of checking, at check-config time, that what the
// backend talks to is reachable (database, control sockets). A failure is a warning: the
// server may simply not be up yet.
type Checker interface {
	Check(ctx context.Context) error
}

// Sweeper is the optional capability of start-up housekeeping: clearing what an earlier
// run killed mid-write left behind (partial temp files), preparing the schema, refreshing
// statistics. The agent calls it once at start, before any transfer, and runs on when it
// fails (the error names what failed).
type Sweeper interface {
	Sweep(ctx context.Context) error
}

// Reader is the optional capability of reading a zone back as the backend really holds it
// (the file, the database rows, what named serves), not as the agent last wrote it: verify,
// dump and resync compare that with the primary. Read calls each with batches of records,
// the SOA first, every record once; it stops at the first error each returns. A zone the
// backend does not hold is ErrNotFound.
type Reader interface {
	Read(ctx context.Context, zone string, each func([]dns.RR) error) error
}

// ReadBatch is how many records a Reader hands over at once.
const ReadBatch = 1000
