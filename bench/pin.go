package bench

import (
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// flagRelayCPUs puts the relays on CPUs of their own: the agents and dnsdist start under
// `taskset -c`, so Go sizes the agent's GOMAXPROCS to them. The bench itself (the load
// generator) and named must run on the other CPUs: start it under `taskset -c` too
// (make bench-pinned). Moving a running agent instead would leave it more Ps than
// CPUs, and a runtime thread then takes turns with the relay's (bench/README.md).
var flagRelayCPUs = flag.String("relay-cpus", "", "start the agents and dnsdist on these CPUs (taskset -c list, e.g. 1); run the bench on the others")

// relayCommand is exec.Command for a relay (an agent, dnsdist): under taskset when
// -relay-cpus is set.
func relayCommand(bin string, args ...string) *exec.Cmd {
	if *flagRelayCPUs == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", *flagRelayCPUs, bin}, args...)...)
}

// checkRelayCPUs fails when -relay-cpus is malformed, or shares a CPU with the bench
// process itself: the load generator would then compete with the relays it measures.
func checkRelayCPUs() error {
	if *flagRelayCPUs == "" {
		return nil
	}
	cpus, err := parseCPUList(*flagRelayCPUs)
	if err != nil {
		return fmt.Errorf("-relay-cpus=%s: %w", *flagRelayCPUs, err)
	}
	var own unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		return err
	}
	for _, c := range cpus {
		if own.IsSet(c) {
			return fmt.Errorf("-relay-cpus=%s: the bench runs on CPU %d too; start it on the other CPUs (taskset -c, or make bench-pinned)", *flagRelayCPUs, c)
		}
	}
	return nil
}

// parseCPUList reads taskset's list form: numbers and ranges, comma-separated ("1", "2-3,5").
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("%q is not a CPU or a range of CPUs", part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
