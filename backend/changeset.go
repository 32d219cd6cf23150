package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ErrInconsistent is returned (wrapped) by Apply when a change set does not fit the stored
// zone: its first step starts at another serial, or it deletes a record that is not there.
// The engine then falls back to a full transfer.
var ErrInconsistent = errors.New("change set does not match the stored zone")

// Step is one version step of an incremental transfer (RFC 1995 §4): the records deleted
// from version Old and those added to reach version New. The SOAs are not in Deleted or
// Added; applying the step replaces Old with New.
type Step struct {
	Old, New *dns.SOA
	Deleted  []dns.RR
	Added    []dns.RR
}

// ChangeSet is a whole incremental transfer: consecutive steps, each starting at the
// serial the previous one ended with.
type ChangeSet struct {
	Zone  string
	Steps []Step
}

// From is the serial the change set applies to; To the serial it produces.
func (c *ChangeSet) From() uint32 { return c.Steps[0].Old.Serial }

// To is the serial after the last step.
func (c *ChangeSet) To() uint32 { return c.Steps[len(c.Steps)-1].New.Serial }

// Size counts the records deleted and added over all steps.
func (c *ChangeSet) Size() (deleted, added int) {
	for _, s := range c.Steps {
		deleted += len(s.Deleted)
		added += len(s.Added)
	}
	return deleted, added
}

// String prints the change set the way a dry run or a debug log shows it.
func (c *ChangeSet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; change set for %s: %d step(s)\n", c.Zone, len(c.Steps))
	for _, s := range c.Steps {
		fmt.Fprintf(&b, "; serial %d -> %d\n", s.Old.Serial, s.New.Serial)
		for _, rr := range s.Deleted {
			fmt.Fprintf(&b, "- %s\n", rr)
		}
		for _, rr := range s.Added {
			fmt.Fprintf(&b, "+ %s\n", rr)
		}
	}
	return b.String()
}

// Incremental is the optional capability of applying a change set in place. Apply must be
// all or nothing: on any error the stored zone is the one before the change set.
type Incremental interface {
	Apply(ctx context.Context, zone string, cs *ChangeSet) error
}
