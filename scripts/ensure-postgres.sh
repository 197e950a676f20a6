#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite.
# It is already running on this kind of machine; if not, start the installed cluster,
# and if none is installed, install Debian's package and start it.
set -uo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}
if ready; then echo "postgres: running on 127.0.0.1:5432"; exit 0; fi
if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "postgres: starting cluster $ver/main"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "postgres: installing Debian's postgresql"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main
  sed -i 's/^\(host.*all.*all.*127.0.0.1\/32.*\)\(scram-sha-256\|md5\|peer\)$/\1trust/' "$conf/pg_hba.conf"
  sed -i 's/^\(local.*all.*all.*\)\(peer\|md5\|scram-sha-256\)$/\1trust/' "$conf/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
else
  echo "postgres: not running and cannot be started here; PostgreSQL tests will skip (or fail under CI=true)"
  exit 0
fi
for _ in $(seq 1 30); do ready && { echo "postgres: running"; exit 0; }; sleep 1; done
echo "postgres: did not come up; PostgreSQL tests will skip (or fail under CI=true)"
exit 0
