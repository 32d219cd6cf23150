package catalog

import (
	"sort"
	"time"

	"github.com/dnsagent/dnsagent/transfer"
)

// Status is what the agent tells about a consumed catalog (/catalogs).
type Status struct {
	Catalog        string            `json:"catalog"`
	Serial         *uint32           `json:"serial,omitempty"`      // the version applied
	SeenSerial     *uint32           `json:"seen_serial,omitempty"` // the version transferred last
	Members        int               `json:"members"`               // listed in the version applied
	Owned          int               `json:"owned"`                 // created by this catalog: deleted when removed
	Groups         map[string]int    `json:"groups,omitempty"`      // members per group property
	LastCheck      time.Time         `json:"last_check,omitzero"`
	LastChange     time.Time         `json:"last_change,omitzero"` // the member list last changed
	Broken         bool              `json:"broken"`
	BrokenReason   string            `json:"broken_reason,omitempty"`
	BrokenSerial   *uint32           `json:"broken_serial,omitempty"`
	PendingRemoval *PendingRemoval   `json:"pending_removal,omitempty"`
	Ignored        map[string]string `json:"ignored,omitempty"` // listed members left alone, and why
	Failed         map[string]string `json:"failed,omitempty"`  // member changes that failed (retried)
	LastError      string            `json:"last_error,omitempty"`
	LastErrorAt    time.Time         `json:"last_error_at,omitzero"`
	Transfer       *transfer.Status  `json:"transfer,omitempty"` // the catalog zone's own transfers
}

// Detail is Status with every member (/catalogs/NAME).
type Detail struct {
	Status
	Zones []MemberStatus `json:"zones"`
}

// MemberStatus is one listed member and what the agent does with it.
type MemberStatus struct {
	Member
	Owner string `json:"owner,omitempty"` // the catalog that created it, if any
	State string `json:"state"`           // owned, ignored, failed, pending
	Why   string `json:"why,omitempty"`
}

// Statuses reports on every consumed catalog, sorted by name.
func (c *Consumer) Statuses() []Status {
	var all []Status
	for _, name := range c.cfg.Zones {
		st, _ := c.Status(name)
		all = append(all, st.Status)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Catalog < all[j].Catalog })
	return all
}

// Status reports on one consumed catalog and its members.
func (c *Consumer) Status(name string) (Detail, bool) {
	tr, hasTransfer := c.transfer.Status(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.catalogs[name]
	if st == nil {
		return Detail{}, false
	}
	d := Detail{Status: Status{Catalog: name, LastCheck: st.lastCheck, LastChange: st.lastChange,
		PendingRemoval: st.pending, LastError: st.lastError, LastErrorAt: st.lastErrorAt}, Zones: []MemberStatus{}}
	if hasTransfer {
		d.Transfer = &tr
	}
	if st.hasSeen {
		seen := st.seen
		d.SeenSerial = &seen
	}
	if b := st.broken; b != nil {
		serial := b.Serial
		d.Broken, d.BrokenReason, d.BrokenSerial = true, b.Reason, &serial
	}
	for _, o := range c.owners {
		if o.Catalog == name {
			d.Owned++
		}
	}
	if len(st.ignored) > 0 {
		d.Ignored = cloneMap(st.ignored)
	}
	if len(st.failed) > 0 {
		d.Failed = cloneMap(st.failed)
	}
	if st.applied == nil {
		return d, true
	}
	serial := st.applied.Serial
	d.Serial, d.Members = &serial, len(st.applied.Members)
	for _, zone := range sortedKeys(st.applied.Members) {
		m := st.applied.Members[zone]
		for _, g := range m.Groups {
			if d.Groups == nil {
				d.Groups = map[string]int{}
			}
			d.Groups[g]++
		}
		ms := MemberStatus{Member: m, Owner: c.owners[zone].Catalog, State: "owned"}
		switch {
		case st.failed[zone] != "":
			ms.State, ms.Why = "failed", st.failed[zone]
		case st.ignored[zone] != "":
			ms.State, ms.Why = "ignored", st.ignored[zone]
		case ms.Owner != name:
			ms.State = "pending" // handed over, not yet processed by the new owner
		}
		d.Zones = append(d.Zones, ms)
	}
	return d, true
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
