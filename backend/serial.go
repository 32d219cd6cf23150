package backend

// Newer reports whether serial a is newer than b in RFC 1982 sequence-space arithmetic
// (SERIAL_BITS = 32): a wrapped serial (1 after 4294967295) is newer, and a serial exactly
// 2^31 away is neither newer nor older (§3.2 leaves it undefined), so it is not newer.
func Newer(a, b uint32) bool {
	return a != b && a-b < 1<<31
}
