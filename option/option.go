// Package option is what a component needs to read and check its own options without
// knowing how the configuration is stored: the Reader its options come from, and the
// field error it reports a mistake with. The service hands each component a Reader (an
// INI section, see package config); check-config prints each field error on one line.
package option

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dnsagent/dnsagent/tsigkey"
)

// Reader gives typed options of one configuration section. A getter that meets a bad
// value records a field error naming the option and returns the default, so reading goes
// on and every mistake is reported at once.
type Reader interface {
	Name() string // the section, for messages
	String(key, def string) string
	List(key string) []string // comma-separated items, trimmed
	Int(key string, def, min int) int
	Bool(key string, def bool) bool
	Seconds(key string, def time.Duration) time.Duration
	FileMode(key string, def os.FileMode) os.FileMode
	TSIGKey(key string) *tsigkey.Key // the [tsig:NAME] key the option names; nil if none
	Errorf(key, format string, args ...any)
}

// Error is one mistake in the configuration: which option of which section, and what is
// wrong with it. A component's Validate leaves Section empty; whoever knows the section
// (the service) fills it in.
type Error struct {
	Section string
	Option  string
	Problem string
}

func (e *Error) Error() string {
	if e.Section == "" {
		return e.Option + ": " + e.Problem
	}
	return "[" + e.Section + "] " + e.Option + ": " + e.Problem
}

// Errorf builds the field error of option (its section left empty).
func Errorf(option, format string, args ...any) *Error {
	return &Error{Option: option, Problem: fmt.Sprintf(format, args...)}
}

// Errors collects a component's mistakes; Err joins them.
type Errors []error

// Add records a problem with option.
func (es *Errors) Add(option, format string, args ...any) {
	*es = append(*es, Errorf(option, format, args...))
}

// Err is nil without mistakes, or all of them joined (one a line).
func (es Errors) Err() error { return errors.Join(es...) }

// Fields lists the field errors in err (a single error or an errors.Join of them); an
// error of another kind is listed under option "" with its text as the problem.
func Fields(err error) []*Error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range joined.Unwrap() {
			out = append(out, Fields(e)...)
		}
		return out
	}
	var fe *Error
	if errors.As(err, &fe) {
		return []*Error{fe}
	}
	return []*Error{{Problem: err.Error()}}
}
