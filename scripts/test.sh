#!/usr/bin/env bash
# Run carerecord's tests: installs what Python needs into .venv, runs the suite on SQLite, then
# on a throwaway PostgreSQL cluster if the PostgreSQL server is installed (Debian: apt-get
# install postgresql). Extra arguments go to pytest, e.g. scripts/test.sh -k search.
# CARERECORD_TEST_BACKENDS=sqlite (or postgresql) runs one backend only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

backends=${CARERECORD_TEST_BACKENDS:-"sqlite postgresql"}
status=0

lint() {
  .venv/bin/ruff check src tests scripts benchmarks
  .venv/bin/lint-imports --no-cache
  .venv/bin/mypy
}

run_sqlite() {
  echo "== tests on SQLite"
  CARERECORD_TEST_DATABASE_URL= .venv/bin/python -m pytest "$@" || status=$?
}

stop_postgres() {
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

run_postgres() {
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "== PostgreSQL server not installed: PostgreSQL tests skipped (apt-get install postgresql)"
    return
  fi
  as=()
  dir=$(mktemp -d /tmp/carerecord-pg.XXXXXX)
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U carerecord -E UTF8 --locale=C.UTF-8 >/dev/null
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
  trap 'stop_postgres' EXIT
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U carerecord carerecord_test
  echo "== tests on PostgreSQL ($("$bindir/postgres" --version), port $port)"
  CARERECORD_TEST_DATABASE_URL="postgresql://carerecord@127.0.0.1:$port/carerecord_test" \
    .venv/bin/python -m pytest "$@" || status=$?
}

lint || status=$?
for b in $backends; do
  case $b in
    sqlite) run_sqlite "$@" ;;
    postgresql) run_postgres "$@" ;;
  esac
done
exit $status
