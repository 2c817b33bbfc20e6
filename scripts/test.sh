#!/usr/bin/env bash
# Runs every test of the workspace, with the store conformance suite on all three backends:
# SQLite (always), PostgreSQL and MySQL/MariaDB on loopback. Each test creates and drops its own
# uniquely named database. Fails if any backend's suite did not run, and prints how many tests
# each backend passed; starts the local PostgreSQL and MariaDB first if they are installed but
# down. Also prints how many multi-host tests (tests/tests/multihost.rs: hosts as
# network namespaces, needs root and /dev/net/tun) ran, and fails if none did when the workspace
# or the tests package is tested.
#
#   DIEGO_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/postgres
#   DIEGO_TEST_MYSQL_URL     default mysql://root@127.0.0.1:3306/mysql
#   DIEGO_TEST_REQUIRE_RUNC  default 1 (the runc tests must run); 0 lets them skip
#   arguments replace `--workspace` (e.g. scripts/test.sh -p db -p proto)
set -uo pipefail
cd "$(dirname "$0")/.."

export DIEGO_TEST_POSTGRES_URL="${DIEGO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export DIEGO_TEST_MYSQL_URL="${DIEGO_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/mysql}"
# Only servers on this machine's default ports are started below.
local_postgres=0
local_mysql=0
case "$DIEGO_TEST_POSTGRES_URL" in *@127.0.0.1:5432/* | *@localhost:5432/*) local_postgres=1 ;; esac
case "$DIEGO_TEST_MYSQL_URL" in *@127.0.0.1:3306/* | *@localhost:3306/*) local_mysql=1 ;; esac

# Starts the local PostgreSQL and MariaDB when they are installed but down, as .ci/run does (as
# root, or through passwordless sudo). Their one-time setup (trust on loopback, root from
# 127.0.0.1) is the README's "Build and test"; a server that cannot be started is reported and
# its suite then fails, naming its URL.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
if [ "$local_postgres" -eq 1 ] && command -v pg_ctlcluster >/dev/null && command -v pg_isready >/dev/null \
  && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version="$(ls /etc/postgresql 2>/dev/null | head -n 1)"
  echo "starting PostgreSQL ${version} (installed but not running)"
  if [ -n "$version" ] && as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  else
    echo "could not start PostgreSQL: start it yourself (needs root)" >&2
  fi
fi
if [ "$local_mysql" -eq 1 ] && [ -x /usr/sbin/mariadbd ] && command -v mysqladmin >/dev/null \
  && ! mysqladmin -h 127.0.0.1 -u root status >/dev/null 2>&1; then
  echo "starting MariaDB (installed but not running)"
  if as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; then
    for _ in $(seq 1 30); do mysqladmin -h 127.0.0.1 -u root status >/dev/null 2>&1 && break; sleep 1; done
  else
    echo "could not start MariaDB: start it yourself (needs root)" >&2
  fi
fi

# With this set, a conformance test whose backend URL is missing fails instead of skipping.
export DIEGO_TEST_REQUIRE_BACKENDS=1
# The runc runtime tests must run, not skip (.ci/run installs runc and busybox-static; they run as
# root). DIEGO_TEST_REQUIRE_RUNC=0 lets them skip, on a machine without root or runc.
if [ "${DIEGO_TEST_REQUIRE_RUNC:-1}" = 0 ]; then
  unset DIEGO_TEST_REQUIRE_RUNC
else
  export DIEGO_TEST_REQUIRE_RUNC="${DIEGO_TEST_REQUIRE_RUNC:-1}"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if [ "$#" -eq 0 ]; then set -- --workspace; fi
# --no-fail-fast: one failing suite must not hide the others (and their counts).
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# The conformance binaries are db/tests/{sqlite,postgres,mysql}.rs: read the result line that
# follows each one's "Running" line.
summary=""
missing=0
for backend in sqlite postgres mysql; do
  passed=$(awk -v b="tests/${backend}.rs" '
    $1 == "Running" && index($2, b) == 1 { want = 1; next }
    want && /^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) print $i; want = 0 }
  ' "$log" | head -n 1)
  passed="${passed:-0}"
  summary="${summary} ${backend}=${passed}"
  if [ "$passed" -eq 0 ]; then
    missing=1
  fi
done

# The multi-host suite is tests/tests/multihost.rs: its result line counts what ran.
multihost=$(awk '
  $1 == "Running" && index($2, "tests/multihost.rs") == 1 { want = 1; next }
  want && /^test result:/ {
    n = 0
    for (i = 1; i <= NF; i++) if ($(i+1) ~ /^(passed|failed)/) n += $i
    print n; want = 0
  }
' "$log" | head -n 1)
multihost="${multihost:-0}"
want_multihost=0
for arg in "$@"; do
  case "$arg" in --workspace | tests) want_multihost=1 ;; esac
done

echo
echo "conformance suite passed per backend:${summary}"
echo "multi-host tests ran: ${multihost}"
if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status)"
  exit "$status"
fi
if [ "$missing" -ne 0 ]; then
  echo "a backend's conformance suite did not run"
  exit 1
fi
if [ "$want_multihost" -ne 0 ] && [ "$multihost" -eq 0 ]; then
  echo "the multi-host suite (tests/multihost.rs) did not run"
  exit 1
fi
