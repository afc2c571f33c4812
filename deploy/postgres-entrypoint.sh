#!/bin/sh
# Starts Debian's PostgreSQL like the official image does: a cluster in $PGDATA made on first
# start, the POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB it names, password logins from the
# network (local socket connections inside the container are trusted).
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:-rampart}" > /tmp/pwfile
  "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-rampart}" --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ -n "${POSTGRES_DB:-}" ] && [ "${POSTGRES_DB}" != "postgres" ]; then
    "$bin/psql" -U "${POSTGRES_USER:-rampart}" -d postgres -qc "CREATE DATABASE \"${POSTGRES_DB}\""
  fi
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
