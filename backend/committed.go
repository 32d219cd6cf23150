package backend

import "context"

type committedKey struct{}

// WithCommitted returns a context under which Committed calls f; nil f hides any hook ctx
// carries. The transfer engine gives a zone's transfer worker back this way (README,
// Scale): a Create's last step is often a wait that loads neither the primary nor the
// server much (PowerDNS's shared rediscover, a group fsync of the zone directory), and
// with the worker held through it that wait, not the work, bounds zones per second.
func WithCommitted(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, committedKey{}, f)
}

// Committed tells whoever runs the operation that the change is committed in the backend
// and what remains is waiting for it to be served or durable. The operation still
// returns its outcome when that wait ends, and its caller answers only then. A backend
// calls it at most once per operation, on the operation's goroutine, after it read its
// Source to the end; a wrapper running several backends at once hides
// it from them (WithCommitted(ctx, nil)), for one of them committed is not all.
func Committed(ctx context.Context) {
	if f, _ := ctx.Value(committedKey{}).(func()); f != nil {
		f()
	}
}
