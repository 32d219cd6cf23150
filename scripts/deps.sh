#!/bin/sh
# Installs the Debian packages the tests need: a real BIND serves as the test primary.
# Idempotent: does nothing when every tool is there already.
set -eu
missing=""
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || missing="$missing bind9"
command -v rndc >/dev/null 2>&1 || [ -x /usr/sbin/rndc ] || missing="$missing bind9-utils"
command -v dig >/dev/null 2>&1 || missing="$missing bind9-dnsutils"
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
