#!/bin/sh
# The stand-in postgres image's start (scripts/container-postgres.Containerfile): a new data
# volume gets a cluster with POSTGRES_USER (password login over TCP) and POSTGRES_DB, as the
# official image does; then the server runs in the foreground as the postgres user.
set -eu
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  exec runuser -u postgres -- sh "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
  initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -w -o "-c listen_addresses=''" start >/dev/null
  database=${POSTGRES_DB:-$user}
  [ "$database" = postgres ] || createdb --username="$user" "$database"
  pg_ctl -w -m fast stop >/dev/null
  echo "postgres: a new cluster with user $user and database $database"
fi
exec postgres -c listen_addresses='*'
