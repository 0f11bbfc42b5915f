#!/usr/bin/env bash
# Installs what the local stack runs (Java 17+, Maven, PostgreSQL and its wal2json plugin)
# from Debian's packages when missing. Idempotent: does nothing when all are present.
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi
updated=no

install() {
  [ $# -gt 0 ] || return 0
  echo "installing system packages: $*"
  if [ "$SUDO" = none ]; then
    echo "error: need root to install $*; run: apt-get install -y $*" >&2
    exit 1
  fi
  if [ "$updated" = no ]; then $SUDO apt-get update -qq; updated=yes; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_majors() {
  for bindir in /usr/lib/postgresql/*/bin; do
    [ -x "$bindir/pg_ctl" ] && basename "$(dirname "$bindir")"
  done
  return 0
}

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[ -n "$(pg_majors)" ] || missing+=(postgresql)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
install "${missing[@]}"

# Capture decodes WAL with wal2json, packaged per PostgreSQL major version; PostgreSQL
# itself may only just have been installed above, so this comes second.
plugins=()
for major in $(pg_majors); do
  [ -f "/usr/lib/postgresql/$major/lib/wal2json.so" ] || plugins+=("postgresql-$major-wal2json")
done
install "${plugins[@]}"
