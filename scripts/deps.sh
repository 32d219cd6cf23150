#!/bin/sh
# Installs the Debian packages the tests need: BIND (test primary and bind9 backend),
# PowerDNS with its MySQL backend and MariaDB (powerdns backend), dig and kdig (clients),
# Knot DNS and NSD (other primaries, and consumers of the file backend's zone files), and
# what the tests run besides (curl, ss, gcc for go test -race).
# Idempotent: does nothing when every tool is there already.
set -eu
need() { # need PACKAGE COMMAND...: install PACKAGE unless every COMMAND is found
	pkg=$1; shift
	for cmd in "$@"; do
		if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
			missing="$missing $pkg"
			return
		fi
	done
}
missing=""
need bind9 named
need bind9-utils rndc rndc-confgen named-checkzone
need bind9-dnsutils dig nsupdate
need knot-dnsutils kdig
need knot knotd knotc
need knot-dnssecutils kzonecheck
need nsd nsd nsd-control nsd-checkzone
need pdns-server pdns_server pdns_control pdnsutil
need mariadb-server mariadbd mariadb-install-db mariadb
[ -f /usr/share/pdns-backend-mysql/schema/schema.mysql.sql ] || missing="$missing pdns-backend-mysql"
# Galera cluster test (TestGaleraFailoverStagedReplace): the wsrep provider, rsync for SST.
[ -f /usr/lib/galera/libgalera_smm.so ] || missing="$missing galera-4"
need rsync rsync
# The demo test and the control API's (curl, ss), and the race detector's cgo.
need curl curl
need iproute2 ss
need gcc gcc
[ -f /usr/include/stdlib.h ] || missing="$missing libc6-dev"
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The packages' own services are not used: the tests start private instances.
# shellcheck disable=SC2086 # word splitting of the package list is intended
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
