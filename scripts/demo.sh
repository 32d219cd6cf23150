#!/usr/bin/env bash
# The agent's main job in under a minute, on loopback, leaving nothing behind: a private
# BIND primary serves a sample zone, the agent (file backend) gets a CREATE as Designate's
# worker sends it, writes the zone file, then follows a change on the primary by IXFR after
# a NOTIFY. Needs named and dig (`make deps`) and bin/dnsagent (`make build`).
# Usage: scripts/demo.sh [path/to/dnsagent]
set -euo pipefail

agent_bin=${1:-bin/dnsagent}
export PATH=$PATH:/usr/sbin:/sbin
zone=demo.example
for tool in named dig "$agent_bin"; do
	command -v "$tool" >/dev/null || { echo "demo: $tool not found (run make deps and make build)" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/dnsagent-demo.XXXXXX")
named_pid= agent_pid=
cleanup() {
	# Stop what this script started, by pid, and wait for it; then remove the temp dir.
	for pid in $agent_pid $named_pid; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $agent_pid $named_pid; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a random port no socket uses (TCP or UDP, any state), below the
# kernel's ephemeral range so no outgoing connection takes it meanwhile.
free_port() {
	local port low
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	while :; do
		port=$((10000 + RANDOM % (low - 10000)))
		if ! ss -Htuan "sport = :$port" 2>/dev/null | grep -q .; then
			echo "$port"
			return
		fi
	done
}

# wait_for CMD...: retries CMD for up to 10 s.
wait_for() {
	local i
	for i in $(seq 100); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "demo: timed out waiting for: $*" >&2
	return 1
}

if [ -t 1 ]; then
	step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	step() { printf '\n== %s\n' "$*"; }
fi

# DEMO_PORTS="PRIMARY AGENT HTTP" picks the ports (the tests hand out their own).
read -r primary_port agent_port http_port <<EOF
${DEMO_PORTS:-$(free_port) $(free_port) $(free_port)}
EOF

zone_text() { # SERIAL [EXTRA LINE]
	cat <<EOF
\$TTL 300
$zone. 3600 IN SOA ns1.$zone. hostmaster.$zone. $1 3600 600 86400 300
$zone. 3600 IN NS ns1.$zone.
ns1.$zone. IN A 192.0.2.1
$zone. IN A 192.0.2.10
www.$zone. IN A 192.0.2.80
$zone. IN MX 10 mail.$zone.
mail.$zone. IN A 192.0.2.25
$zone. IN TXT "v=spf1 -all"
${2:-}
EOF
}

step "Starting a private BIND primary on 127.0.0.1:$primary_port serving $zone (serial 1)"
mkdir -p "$dir/primary" "$dir/zones"
zone_text 1 >"$dir/primary/$zone.zone"
cat >"$dir/primary/named.conf" <<EOF
options {
	directory "$dir/primary";
	pid-file "$dir/primary/named.pid";
	listen-on port $primary_port { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-transfer { 127.0.0.1; };
	notify no;                   // the demo sends the NOTIFY itself, as Designate would
	ixfr-from-differences yes;   // a reload after an edit keeps the difference for IXFR
	dnssec-validation no;
};
controls { };
zone "$zone" { type primary; file "$dir/primary/$zone.zone"; };
EOF
named -g -c "$dir/primary/named.conf" >"$dir/named.log" 2>&1 &
named_pid=$!
serial_is() { [ "$(dig +short +time=1 +tries=1 -p "$primary_port" @127.0.0.1 "$zone" SOA | awk '{print $3}')" = "$1" ]; }
wait_for serial_is 1 || { cat "$dir/named.log"; exit 1; }
echo "named answers: $(dig +short -p "$primary_port" @127.0.0.1 "$zone" SOA)"

step "Starting the agent (file backend) on 127.0.0.1:$agent_port, HTTP on 127.0.0.1:$http_port"
cat >"$dir/agent.conf" <<EOF
[service:agent]
listen = 127.0.0.1:$agent_port
masters = 127.0.0.1:$primary_port
allow_notify = 127.0.0.1
backend_driver = file
metrics_listen = 127.0.0.1:$http_port
diff_index_dir = $dir/index
min_check_interval = 0

[agent:file]
zone_file_path = $dir/zones
EOF
"$agent_bin" --config "$dir/agent.conf" >"$dir/agent.log" 2>&1 &
agent_pid=$!
agent_ready() { kill -0 "$agent_pid" && curl -fs "http://127.0.0.1:$http_port/readyz"; }
if ! wait_for agent_ready; then
	cat "$dir/agent.log"
	exit 1
fi

step "CREATE $zone, as Designate's worker sends it: dnsagent send create $zone --server 127.0.0.1:$agent_port"
"$agent_bin" send create "$zone" --server "127.0.0.1:$agent_port"

step "The zone file the agent wrote: $dir/zones/$zone.zone"
cat "$dir/zones/$zone.zone"
echo "SOA in the file: $(grep -m1 -P '\tSOA\t' "$dir/zones/$zone.zone")"

step "Changing the zone on the primary: serial 2, one record added; named reloads it"
zone_text 2 "new.$zone. IN A 192.0.2.99" >"$dir/primary/$zone.zone"
kill -HUP "$named_pid"
wait_for serial_is 2 || { cat "$dir/named.log"; exit 1; }
echo "named answers: $(dig +short -p "$primary_port" @127.0.0.1 "$zone" SOA)"

step "NOTIFY, as Designate sends it: dnsagent send notify $zone --server 127.0.0.1:$agent_port"
"$agent_bin" send notify "$zone" --server "127.0.0.1:$agent_port"
applied() { grep -q '"type": "IXFR".*"serial_to": 2.*"result": "applied"' "$dir/agent.log"; }
wait_for applied || { cat "$dir/agent.log"; exit 1; }

step "The transfer in the agent's log: IXFR from serial 1 to 2, only the difference"
grep '"type": "IXFR"' "$dir/agent.log"

step "The zone file now"
echo "SOA in the file: $(grep -m1 -P '\tSOA\t' "$dir/zones/$zone.zone")"
grep "new\.$zone" "$dir/zones/$zone.zone"

step "What the agent says about the zone: curl http://127.0.0.1:$http_port/zones/$zone"
curl -fs "http://127.0.0.1:$http_port/zones/$zone"

step "Stopping the agent and named"
cleanup
trap - EXIT
echo "demo: done, nothing left running"
