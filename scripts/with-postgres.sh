#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster on a loopback port (Debian's `postgresql`
# package; installed if missing), its URL in ROOMHOST_TEST_DATABASE_URL and PG_CTL/PG_DATA set so
# fault tests can stop and start it. The cluster is stopped and removed when the command ends.
set -euo pipefail
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d)
chmod 711 "$DIR"   # the postgres user must be able to enter it
mkdir "$DIR/pg" && chown postgres "$DIR/pg"
# A free loopback port unless one is given (other clusters may run on this machine).
PORT=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
as_pg() { su postgres -s /bin/sh -c "$*"; }
export PG_CTL="$BIN/pg_ctl" PG_DATA="$DIR/pg/data" PG_LOG="$DIR/pg/log"
export PG_START_OPTS="-p $PORT -k $DIR/pg -c listen_addresses=127.0.0.1"
stop() {
  as_pg "$BIN/pg_ctl -D $DIR/pg/data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap stop EXIT
as_pg "$BIN/initdb -D $DIR/pg/data -A trust -U postgres" >/dev/null
as_pg "$BIN/pg_ctl -D $DIR/pg/data -l $DIR/pg/log -w start -o '$PG_START_OPTS'" >/dev/null ||
  { cat "$DIR/pg/log"; exit 1; }
as_pg "$BIN/createdb -h 127.0.0.1 -p $PORT roomhost"
export ROOMHOST_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/roomhost"
"$@"
