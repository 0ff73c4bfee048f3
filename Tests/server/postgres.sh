#!/usr/bin/env bash
# A private PostgreSQL for tests, from Debian's server binaries (package postgresql):
#   postgres.sh start DIR PORT   initdb DIR/data when it is new, start, print the URL
#   postgres.sh stop DIR         stop it (fast: open connections are closed); nothing if stopped
# Trust authentication, listening on 127.0.0.1:PORT only, its unix socket in DIR/socket, fsync
# off (a test database). The server refuses to run as root: as root, it runs as the `postgres`
# user, who must be able to reach DIR (a folder from mktemp -d is fine). Exit 77: no PostgreSQL.
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    echo "no PostgreSQL server binaries under /usr/lib/postgresql (Debian: apt-get install postgresql)" >&2
    exit 77
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$2"
dir=$(cd "$2" && pwd)
case $1 in
start)
    [ $# -eq 3 ] || usage
    port=$3
    mkdir -p "$dir/socket"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # The server outlives this script: it must not keep the caller's descriptors open (Swift's
    # Process.waitUntilExit waits until every holder of one of them has exited).
    for fd in $(ls /proc/$$/fd); do
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=off" start >/dev/null; then
        cat "$dir/server.log" >&2
        exit 1
    fi
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    [ $# -eq 2 ] || usage
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    fi
    ;;
*)
    usage
    ;;
esac
