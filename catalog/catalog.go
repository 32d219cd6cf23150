// Package catalog owns the consumption of catalog zones (RFC 9432). Catalog zones are
// held in a memory backend by a transfer engine of their own, so NOTIFY, IXFR, retries and
// refresh apply to them unchanged; after every successful check of a catalog the consumer
// parses and validates it and reconciles its member list into the agent's backend through
// the main transfer engine: new members are created, removed ones deleted (only zones this
// catalog created), members whose unique label changed are deleted and created again, and
// members are handed over to another catalog on a change of ownership (coo). A broken
// version changes nothing, a version removing too many members at once waits for a
// confirmation, and which catalog created which zone is kept in a small state file.
package catalog

import (
	"github.com/dnsagent/dnsagent/backend"
	"github.com/dnsagent/dnsagent/option"
)

// Defaults of the catalog options of [service:agent].
const (
	DefaultStateFile  = "/var/lib/dnsagent/catalogs.json"
	DefaultMaxRemoval = 0.5
)

// Config is the consumer's part of [service:agent].
type Config struct {
	// Zones are the catalog zones to consume (catalog_zones), canonical names.
	Zones []string
	// StateFile records which catalog created which member zone (catalog_state_file).
	StateFile string
	// MaxRemoval is the share of a catalog's members one version may remove before the
	// removal waits for a confirmation (catalog_max_removal); 1 turns the guard off.
	MaxRemoval float64
	// ConfirmRemoval applies held removals without waiting (catalog_confirm_removal).
	ConfirmRemoval bool
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs option.Errors
	seen := map[string]bool{}
	for _, z := range c.Zones {
		if err := backend.ValidateZoneName(z); err != nil {
			errs.Add("catalog_zones", "%v", err)
		}
		if seen[z] {
			errs.Add("catalog_zones", "%s is listed twice", z)
		}
		seen[z] = true
	}
	if len(c.Zones) > 0 && c.StateFile == "" {
		errs.Add("catalog_state_file", "must not be empty when catalog_zones is set")
	}
	if c.MaxRemoval <= 0 || c.MaxRemoval > 1 {
		errs.Add("catalog_max_removal", "%v is not a share in (0, 1]", c.MaxRemoval)
	}
	return errs.Err()
}
