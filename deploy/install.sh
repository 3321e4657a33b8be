#!/usr/bin/env bash
# Installs a spark worker from a root-owned git checkout (we suggest
# /opt/spark-ts) the way the Debian package does, because it is the package:
#   1. builds spark-ts from the commit checked out (npm run package --
#      --snapshot: version 0.1.0-1+git<date>.<time>.<commit>, so each later
#      commit is an upgrade) into /var/cache/spark-ts, with `npm ci` first
#      when package-lock.json changed since node_modules was installed
#   2. refuses, changing nothing, when apt cannot install it or a later
#      version is installed
#   3. apt-get install of the package: its preinst moves a host an earlier
#      install.sh set up out of the package's way (deploy/debian/preinst),
#      its postinst sets the host up (setup-host, as `dpkg-reconfigure
#      spark-ts` runs it again) and restarts running services when the
#      version changed
#   4. with --enable, enables and starts spark.target
# Run it again after pulling a newer commit. When this commit's package is
# installed already it installs nothing: after changing spark.toml or the
# keys run `dpkg-reconfigure spark-ts` (README, "Install from the package").
# The development/test machine setup is scripts/setup.sh, not this.
#   bash deploy/install.sh [--enable]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=/var/cache/spark-ts

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "install.sh: $*" >&2
  exit 1
}
enable=false
case "${1:-}" in
  --enable) enable=true ;;
  "") ;;
  *) fail "unknown argument '$1' (usage: bash deploy/install.sh [--enable])" ;;
esac
systemd=false
[ -d /run/systemd/system ] && systemd=true
[ "$(id -u)" -eq 0 ] || fail "run as root"

step "checkout $root"
# Root builds the package from here: nobody else may be able to change it.
for path in "$root" "$root/apps" "$root/libs" "$root/tools" "$root/deploy" "$root/node_modules"; do
  [ -e "$path" ] || continue
  [ "$(stat -c %u "$path")" = 0 ] && [ $((0$(stat -c %a "$path") & 022)) -eq 0 ] ||
    fail "$path must be owned by root and not writable by group or others"
done
git -C "$root" rev-parse --verify -q HEAD >/dev/null || fail "$root is not a git checkout (the package's version names the commit it is built from)"
node=$(command -v node) || fail "Node.js 20.19 or newer is required to build the package (node is not on PATH)"
"$node" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
  fail "Node.js 20.19 or newer is required to build the package, $node is $("$node" --version)"
echo "commit $(git -C "$root" log -1 --format='%h %cs %s'), built with $node $("$node" --version)"
[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] ||
  echo "note: the checkout has uncommitted changes; they are built, but the version names only the commit"

step "the package"
# The dependencies the lock file names: again after a pull that changed it.
if [ ! -f "$root/node_modules/.package-lock.json" ] || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || fail "npm is needed to install the checkout's build dependencies (npm ci): NodeSource's nodejs has it; on Debian 13, apt install npm"
  (cd "$root" && npm ci --no-audit --no-fund)
fi
install -d -o root -g root -m 0755 "$cache"
built=$(cd "$root" && "$node" --conditions=@spark/source --import tsx tools/package/build.ts --snapshot --no-lintian --out "$cache")
deb=${built%%$'\n'*}
[ -f "$deb" ] || fail "the package build named no file: '$deb'"
version=$(dpkg-deb -f "$deb" Version)
installed=$(dpkg-query -W -f '${db:Status-Status} ${Version}' spark-ts 2>/dev/null || true)
echo "$deb"
if [ "$installed" = "installed $version" ]; then
  echo "spark-ts $version (this commit) is installed already: nothing to install."
  echo "After changing spark.toml or the keys: dpkg-reconfigure spark-ts"
  if $enable && $systemd; then systemctl enable --now spark.target; fi
  exit 0
fi
if [ "${installed%% *}" = installed ] && dpkg --compare-versions "${installed#* }" gt "$version"; then
  fail "spark-ts ${installed#* } is installed, newer than this commit's $version: to go back to it, apt install --allow-downgrades $deb (README, \"Upgrading\"); nothing was changed"
fi

# Before anything changes: apt can install it (nodejs >= 20.19 and the other dependencies found).
apt-get update -qq
apt-get install -s -qq --no-install-recommends "$deb" >/dev/null ||
  fail "apt cannot install $deb (above: what it lacks; on Debian 12 nodejs >= 20.19 comes from NodeSource, README \"Install from the package\"); nothing was changed"

step "apt-get install $deb"
# The package's preinst moves an earlier install.sh installation aside (README, "Install from a checkout").
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb" ||
  fail "apt-get install failed (above: why). When the package is unpacked but not configured (dpkg -l spark-ts shows iF), fix what setup-host names in spark.toml, then: dpkg --configure -a"
if $enable && $systemd; then systemctl enable --now spark.target; fi
echo "spark-ts $version installed from $root"
