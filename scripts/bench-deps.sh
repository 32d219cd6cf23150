#!/bin/sh
# Installs what only the benchmarks need (bench/README.md): dnsdist, the passthrough peer.
# The tests never use it, so scripts/deps.sh does not install it. Idempotent.
set -eu
command -v dnsdist >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "bench-deps: installing dnsdist"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The package's own service is not used: the bench starts a private instance.
$sudo apt-get install -y -qq --no-install-recommends dnsdist >/dev/null
