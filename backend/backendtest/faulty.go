package backendtest

import (
	"context"
	"errors"

	"github.com/miekg/dns"

	"github.com/dnsagent/dnsagent/backend"
)

// Faulty wraps a backend for tests that inject faults: Fail is consulted before every
// operation (op is "serial", "create", "replace", "delete", "apply", "read" or "zones";
// zone is empty for "zones"), and a non-nil result is returned as the operation's error
// without reaching the backend. Set Fail before the wrapper is shared between goroutines.
type Faulty struct {
	backend.Backend
	Fail func(op, zone string) error
}

var (
	_ backend.Incremental = (*Faulty)(nil)
	_ backend.Reader      = (*Faulty)(nil)
)

func (f *Faulty) fail(op, zone string) error {
	if f.Fail == nil {
		return nil
	}
	return f.Fail(op, zone)
}

// Serial implements backend.Backend.
func (f *Faulty) Serial(ctx context.Context, zone string) (uint32, error) {
	if err := f.fail("serial", zone); err != nil {
		return 0, err
	}
	return f.Backend.Serial(ctx, zone)
}

// Create implements backend.Backend.
func (f *Faulty) Create(ctx context.Context, zone string, src backend.Source) error {
	if err := f.fail("create", zone); err != nil {
		return err
	}
	return f.Backend.Create(ctx, zone, src)
}

// Replace implements backend.Backend.
func (f *Faulty) Replace(ctx context.Context, zone string, src backend.Source) error {
	if err := f.fail("replace", zone); err != nil {
		return err
	}
	return f.Backend.Replace(ctx, zone, src)
}

// Delete implements backend.Backend.
func (f *Faulty) Delete(ctx context.Context, zone string) error {
	if err := f.fail("delete", zone); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, zone)
}

// Zones implements backend.Backend.
func (f *Faulty) Zones(ctx context.Context) ([]string, error) {
	if err := f.fail("zones", ""); err != nil {
		return nil, err
	}
	return f.Backend.Zones(ctx)
}

// errNotSupported is returned by Apply and Read when the wrapped backend lacks them.
var errNotSupported = errors.New("the wrapped backend does not support this")

// Apply implements backend.Incremental if the wrapped backend does.
func (f *Faulty) Apply(ctx context.Context, zone string, cs *backend.ChangeSet) error {
	if err := f.fail("apply", zone); err != nil {
		return err
	}
	inc, ok := f.Backend.(backend.Incremental)
	if !ok {
		return errNotSupported
	}
	return inc.Apply(ctx, zone, cs)
}

// Read implements backend.Reader if the wrapped backend does.
func (f *Faulty) Read(ctx context.Context, zone string, each func([]dns.RR) error) error {
	if err := f.fail("read", zone); err != nil {
		return err
	}
	r, ok := f.Backend.(backend.Reader)
	if !ok {
		return errNotSupported
	}
	return r.Read(ctx, zone, each)
}
