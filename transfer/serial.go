package transfer

import "github.com/dnsagent/dnsagent/backend"

// Newer reports whether serial a is newer than b in RFC 1982 sequence-space arithmetic;
// see backend.Newer, the one definition (the fan-out backend compares serials too).
func Newer(a, b uint32) bool { return backend.Newer(a, b) }
