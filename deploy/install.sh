#!/usr/bin/env bash
# Installs a spark worker from a root-owned git checkout (we suggest
# /opt/spark-ts) the way the Debian package does, because it is the package:
#   1. builds spark-ts from the commit checked out (npm run package --
#      --snapshot: version 0.1.0-1+git<date>.<time>.<commit>, so each later
#      commit is an upgrade) into /var/cache/spark-ts, with `npm ci` first
#      when the checkout has no node_modules
#   2. moves a host an earlier install.sh set up (launchers in /usr/local,
#      units in /etc/systemd/system, the sudoers rule) out of the package's
#      way: its running services are stopped (each builder drains first),
#      the files go to /var/backups/spark-ts-install.sh/<time>/, the users,
#      Redis, passwords, drop-ins and spark.toml stay
#   3. apt-get install of the package: its postinst sets the host up
#      (setup-host, as `dpkg-reconfigure spark-ts` runs it again) and
#      restarts running services when the version changed
#   4. starts again what step 2 stopped; with --enable, enables and starts
#      spark.target
# Run it again after pulling a newer commit. When this commit's package is
# installed already it installs nothing: after changing spark.toml or the
# keys run `dpkg-reconfigure spark-ts` (README, "Install from the package").
# The development/test machine setup is scripts/setup.sh, not this.
#   bash deploy/install.sh [--enable]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=/var/cache/spark-ts
services=(spark-connector.service 'spark-builder@*.service' spark-signer.service spark-uploader.service)

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

step "an earlier install.sh's files"
# What install.sh wrote before it built the package, where the package's files would be shadowed:
# /usr/local/bin comes first on PATH, and units in /etc/systemd/system override /usr/lib/systemd/system.
old=(
  /usr/local/bin/spark /usr/local/bin/spark-connector /usr/local/bin/spark-builder /usr/local/bin/spark-signer
  /usr/local/bin/spark-uploader /usr/local/sbin/spark-build-helper
  /etc/systemd/system/spark-connector.service /etc/systemd/system/spark-builder@.service
  /etc/systemd/system/spark-signer.service /etc/systemd/system/spark-uploader.service /etc/systemd/system/spark.target
  /etc/sudoers.d/10spark-builder
  /usr/local/share/man/man1/spark.1 /usr/local/share/man/man8/spark-connector.8 /usr/local/share/man/man8/spark-builder.8
  /usr/local/share/man/man8/spark-signer.8 /usr/local/share/man/man8/spark-uploader.8
  /usr/local/share/bash-completion/completions/spark
)
found=()
for file in "${old[@]}"; do
  # The package's own sudoers rule (a conffile) is the one file of this list it installs in place.
  if [ -e "$file" ] && ! dpkg-query -S "$file" >/dev/null 2>&1; then found+=("$file"); fi
done
stopped=()
if [ ${#found[@]} -eq 0 ]; then
  echo "none"
else
  if $systemd; then
    mapfile -t stopped < <(systemctl list-units --state=active --plain --no-legend "${services[@]}" spark.target | awk '{print $1}')
    if [ ${#stopped[@]} -gt 0 ]; then
      echo "stopping ${stopped[*]} (each builder drains first, for DrainTimeout; queued jobs stay in Redis)"
      systemctl stop "${stopped[@]}"
    fi
  fi
  backup=/var/backups/spark-ts-install.sh/$(date -u +%Y%m%dT%H%M%SZ)
  for file in "${found[@]}"; do
    install -d -m 0700 "$backup$(dirname "$file")"
    mv "$file" "$backup$file"
  done
  chmod 0700 /var/backups/spark-ts-install.sh
  echo "moved to $backup: ${found[*]}"
  # What `systemctl enable` linked to a moved unit (spark.target in multi-user.target.wants, a
  # spark-builder@N in spark.target.wants) now names the package's unit of that name: enabled stays enabled.
  for link in /etc/systemd/system/*.wants/* /etc/systemd/system/*.requires/*; do
    [ -L "$link" ] || continue
    target=$(readlink "$link")
    case "$target" in
      /etc/systemd/system/spark-*.service | /etc/systemd/system/spark.target)
        ln -sfn "/usr/lib/systemd/system/${target##*/}" "$link"
        echo "$link now links to /usr/lib/systemd/system/${target##*/}"
        ;;
    esac
  done
  if $systemd; then systemctl daemon-reload; fi
fi

step "apt-get install $deb"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb"; then
  echo "install.sh: apt-get install failed (above: why). When the package is unpacked but not configured (dpkg -l spark-ts shows iF), fix what setup-host names in spark.toml, then: dpkg --configure -a" >&2
  [ ${#stopped[@]} -eq 0 ] || echo "install.sh: still stopped: ${stopped[*]}; start them once it is installed: systemctl start ${stopped[*]}" >&2
  exit 1
fi

if $systemd; then
  if $enable; then
    systemctl enable --now spark.target
  elif [ ${#stopped[@]} -gt 0 ]; then
    systemctl start "${stopped[@]}"
  fi
fi
echo "spark-ts $version installed from $root"
