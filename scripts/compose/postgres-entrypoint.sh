#!/bin/sh
# Stand-in for the postgres image's entrypoint: a cluster made on first start in PGDATA with
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, listening on every address with passwords.
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /run/postgresql
chown postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" >/tmp/pwfile
    chown postgres /tmp/pwfile
    su postgres -s /bin/sh -c "$BIN/initdb -D '$PGDATA' -U '$POSTGRES_USER' --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256"
    rm /tmp/pwfile
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$PGDATA' -w -o '-c listen_addresses=' start"
    [ "$POSTGRES_DB" = postgres ] || su postgres -s /bin/sh -c "$BIN/createdb -U '$POSTGRES_USER' '$POSTGRES_DB'"
    su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$PGDATA' -w stop"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*'
