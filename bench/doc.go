// Package bench measures the agent against the alternatives an operator has: BIND's and
// PowerDNS's own secondaries doing the same job, and the floors any solution pays (reading
// the AXFR, named parsing the zone file, bulk-loading the rows). Everything runs on
// loopback with private servers started through tests/harness; TestBenchTable drives it
// (make bench, make bench-quick) and writes RESULTS.md. See README.md.
package bench
