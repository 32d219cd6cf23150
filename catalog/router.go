package catalog

import (
	"context"
	"errors"

	"github.com/dnsagent/dnsagent/transfer"
	"go.uber.org/zap"
)

// Router is the transfer engine as the DNS handler sees it when catalogs are consumed:
// a NOTIFY for a catalog zone goes to the catalogs' engine, and a NOTIFY for a member of
// a consumed catalog that is not in the backend yet is accepted and schedules the
// member's creation instead of being refused. Everything else goes to the main engine.
type Router struct {
	c *Consumer
}

// Router returns the request router of c.
func (c *Consumer) Router() *Router { return &Router{c: c} }

// Notify implements handler.Zones.
func (r *Router) Notify(ctx context.Context, zone string, n transfer.Notify) error {
	c := r.c
	if st := c.catalogs[zone]; st != nil { // the map is fixed after New
		err := c.transfer.Notify(ctx, zone, n)
		if errors.Is(err, transfer.ErrUnknownZone) {
			// Not transferred yet (the masters did not answer so far): try again now.
			select {
			case st.bringIn <- struct{}{}:
			default:
			}
			return nil
		}
		return err
	}
	err := c.main.Notify(ctx, zone, n)
	if errors.Is(err, transfer.ErrUnknownZone) {
		if catalog := c.notifyMember(zone); catalog != "" {
			c.log.Info("NOTIFY for a catalog member not created yet: its creation is scheduled",
				zap.String("zone", zone), zap.String("catalog", catalog))
			return nil
		}
	}
	return err
}

// Create implements handler.Zones (opcode 14 CREATE): the main engine's.
func (r *Router) Create(ctx context.Context, zone string) error { return r.c.main.Create(ctx, zone) }

// Delete implements handler.Zones (opcode 14 DELETE): the main engine's.
func (r *Router) Delete(ctx context.Context, zone string) error { return r.c.main.Delete(ctx, zone) }

// notifyMember schedules the creation of zone if a consumed catalog lists it and no other
// source owns it, and returns that catalog ("" if none).
func (c *Consumer) notifyMember(zone string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing[zone] {
		return ""
	}
	o, owned := c.owners[zone]
	for _, name := range sortedKeys(c.catalogs) {
		st := c.catalogs[name]
		if st.applied == nil {
			continue
		}
		if _, listed := st.applied.Members[zone]; !listed || (owned && o.Catalog != name) {
			continue
		}
		st.ensure[zone] = true
		c.kickLocked(st)
		return name
	}
	return ""
}
