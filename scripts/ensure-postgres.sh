#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite.
# It is already running on this kind of machine; if not, start the installed cluster,
# and if none is installed, install Debian's package and start it. When none of that works,
# say so: locally exit 0 and the PostgreSQL tests skip; under CI=true exit 1, so a CI run
# never passes with them skipped.
set -uo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 - 2>/dev/null <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}
give_up() {
  if [ "${CI:-}" = true ]; then
    echo "postgres: $1; CI=true, so this is an error (the PostgreSQL tests must run in CI)" >&2
    exit 1
  fi
  echo "postgres: $1; the PostgreSQL tests will skip"
  exit 0
}
if ready; then echo "postgres: running on 127.0.0.1:5432"; exit 0; fi
if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "postgres: starting cluster $ver/main"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
elif [ "$(id -u 2>/dev/null)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "postgres: installing Debian's postgresql"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main
  sed -i 's/^\(host.*all.*all.*127.0.0.1\/32.*\)\(scram-sha-256\|md5\|peer\)$/\1trust/' "$conf/pg_hba.conf"
  sed -i 's/^\(local.*all.*all.*\)\(peer\|md5\|scram-sha-256\)$/\1trust/' "$conf/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
else
  give_up "not running on 127.0.0.1:5432, and cannot be started here (no cluster, not root or no apt-get)"
fi
for _ in $(seq 1 30); do ready && { echo "postgres: running"; exit 0; }; sleep 1; done
give_up "did not come up on 127.0.0.1:5432 within 30 s"
