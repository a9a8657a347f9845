#!/usr/bin/env bash
# Starts the local PostgreSQL server (scripts/deps.sh installs it), makes
# the role and database that the archive tests use, and prints their URL.
# Safe to run again.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; run scripts/deps.sh" >&2
    exit 2
fi
cd /tmp
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres bash -c "$1"; fi
}
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
cluster=$(pg_lsclusters --no-header | head -1)
if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $sudo pg_createcluster "$version" main >/dev/null
    cluster=$(pg_lsclusters --no-header | head -1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != online ]; then
    $sudo pg_ctlcluster "$version" "$name" start >&2
fi
psql_q() { as_postgres "psql -p $port -tAc \"$1\""; }
psql_q "SELECT 1 FROM pg_roles WHERE rolname = 'audionas'" | grep -q 1 \
    || psql_q "CREATE ROLE audionas LOGIN PASSWORD 'audionas'" >/dev/null
psql_q "SELECT 1 FROM pg_database WHERE datname = 'audionas_test'" | grep -q 1 \
    || as_postgres "createdb -p $port -O audionas audionas_test"
echo "postgres://audionas:audionas@127.0.0.1:$port/audionas_test"
