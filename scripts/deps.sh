#!/usr/bin/env bash
# Install the Debian 12 packages Mycelium needs to build, test and demo,
# skipping those already present.  Needs root (or sudo) only when something
# is missing.
set -euo pipefail

pkgs=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libpq-dev
      libssl-dev libsqlite3-dev sqlite3 openssl libipc-run-perl make gcc
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "mycelium: installing missing packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "mycelium: need root or sudo to install ${missing[*]}" >&2; exit 1; }
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
