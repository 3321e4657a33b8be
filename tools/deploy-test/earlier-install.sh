#!/usr/bin/env bash
# deploy/install.sh as it was before it built the Debian package (618a62b),
# kept to test how today's install.sh moves a host it set up (test:deploy --
# --from checkout). Only where it finds the checkout changed: SPARK_CHECKOUT,
# since this copy does not live in one.
#   SPARK_CHECKOUT=/opt/spark-ts bash earlier-install.sh [--enable]
# Installs a spark worker on a Debian 12 host for production, from a
# root-owned checkout (we suggest /opt/spark-ts). The Debian package
# (npm run package; README, "Install from the package") installs the same
# without a checkout; this script stays for hosts run from one. Idempotent:
# run it again after changing spark.toml (WorkspaceRoot, RedisUrl,
# RedisMaxMemory, [signer] AuditLog …) or the keys.
#   1. runtime Debian packages only (no compilers, browsers or test tools)
#   2. the build (npm ci and nx build, skipped when dist/ is already there)
#   3. the commands: spark, spark-connector, spark-builder, spark-signer,
#      spark-uploader in /usr/local/bin, the build helper in /usr/local/sbin,
#      their manual pages and spark's bash completion
#   4. one system user per service in the group lkspark
#   5. the sudoers rule (the builder may run the build helper as root, nothing else)
#   6. the systemd units and spark.target
#   7. deploy/setup-host.sh, which does what depends on spark.toml: the
#      directories, the key files' owners, the worker's own Redis instance
#      (redis-server@spark) with one ACL user per service, the units'
#      drop-ins for WorkspaceRoot, log rotation and expiry (--enable also
#      starts spark.target)
# Files setup-host.sh generates start with "# Written by deploy/install.sh";
# remove that line from one to keep your own version (it is then left alone).
# The development/test machine setup is scripts/setup.sh, not this.
#   bash deploy/install.sh [--enable]
set -euo pipefail
root=${SPARK_CHECKOUT:?the checkout it installs from}
here=$root/deploy
unitdir=/etc/systemd/system
bindir=/usr/local/bin
helper=/usr/local/sbin/spark-build-helper

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "install.sh: $*" >&2
  exit 1
}
systemd=false
[ -d /run/systemd/system ] && systemd=true
[ "$(id -u)" -eq 0 ] || fail "run as root"

step "Debian packages (runtime)"
packages=(
  redis-server                                 # the queues (the worker's own instance, redis-server@spark)
  logrotate                                    # rotates the signer's audit log
  debspawn systemd-container debootstrap zstd  # builds in containers, image creation
  sudo                                         # the builder reaches the build helper through sudo
  gnupg ca-certificates git                    # key export, the host CA store for HTTPS, image recipes
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi
# A host that had no Redis before: the package started its default instance, which nothing uses.
if $systemd && [[ " ${missing[*]} " == *" redis-server "* ]]; then
  systemctl disable --now --quiet redis-server.service
  echo "redis-server.service (the host's default instance, started by the package) stopped and disabled: the worker runs its own, redis-server@spark"
fi

step "Node.js"
node=$(command -v node) || fail "Node.js 20.19 or newer is required (node is not on PATH)"
"$node" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
  fail "Node.js 20.19 or newer is required, $node is $("$node" --version)"
echo "$node $("$node" --version)"

step "checkout $root"
# Root runs the build helper from here: nobody else may be able to change it.
for path in "$root" "$root/apps" "$root/apps/build-helper" "$root/libs" "$root/node_modules"; do
  [ -e "$path" ] || continue
  [ "$(stat -c %u "$path")" = 0 ] && [ $((0$(stat -c %a "$path") & 022)) -eq 0 ] ||
    fail "$path must be owned by root and not writable by group or others"
done
services=(connector builder signer uploader)
built=true
for app in cli build-helper "${services[@]}"; do [ -f "$root/apps/$app/dist/main.js" ] || built=false; done
if $built && [ -d "$root/node_modules" ]; then
  echo "built already (to rebuild: npm ci && npx nx run-many -t build)"
else
  (cd "$root" && npm ci --no-audit --no-fund && NX_DAEMON=false NX_TUI=false npx nx run-many -t build --outputStyle=static)
fi

step "commands"
launcher() {
  # A small launcher rather than a symlink: it names this node and survives rebuilds.
  # Node flags may follow the script (the services' V8 flags).
  local target=$1 script=$2 tmp
  shift 2
  tmp=$(mktemp)
  { printf '#!/bin/sh\nexec %q' "$node"; [ $# -eq 0 ] || printf ' %q' "$@"; printf ' %q "$@"\n' "$script"; } >"$tmp"
  install -o root -g root -m 0755 "$tmp" "$target"
  rm -f "$tmp"
  echo "$target runs $script"
}
# Each program's V8 flags: nodeFlags() in libs/config/src/node-flags.ts (docs/benchmarks.md, "Idle memory").
# The builder keeps V8's optimising compilers for its log relay; spark's `spark run` supervisor idles at 44 MiB with the lean set.
node_flags() {
  case "$1" in
    builder) echo --max-semi-space-size=1 ;;
    *) echo --lite-mode --no-expose-wasm --max-semi-space-size=1 ;;
  esac
}
# shellcheck disable=SC2046 # the flags hold no spaces
launcher "$bindir/spark" "$root/apps/cli/dist/main.js" $(node_flags cli)
# shellcheck disable=SC2046
for service in "${services[@]}"; do launcher "$bindir/spark-$service" "$root/apps/$service/dist/main.js" $(node_flags "$service"); done
install -d -o root -g root -m 0755 "$(dirname "$helper")"
launcher "$helper" "$root/apps/build-helper/dist/main.js"
# Manual pages and bash completion, made from the commands' own --help (tools/src/man).
mandir=/usr/local/share/man
pages=$(mktemp -d)
(cd "$root" && "$node" --conditions=@spark/source --import tsx tools/src/man/build.ts "$pages" >/dev/null)
install -D -o root -g root -m 0644 "$pages/spark.1" "$mandir/man1/spark.1"
for service in "${services[@]}"; do install -D -o root -g root -m 0644 "$pages/spark-$service.8" "$mandir/man8/spark-$service.8"; done
install -D -o root -g root -m 0644 "$pages/spark.bash-completion" /usr/local/share/bash-completion/completions/spark
rm -rf "$pages"
echo "manual pages in $mandir (man spark, man 8 spark-signer …); bash completion for spark"

step "users"
getent group lkspark >/dev/null || groupadd --system lkspark
getent group spark-operators >/dev/null || groupadd --system spark-operators
for user in spark-connector spark-builder spark-signer spark-uploader; do
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --gid lkspark --home-dir /var/lib/lkspark --no-create-home --shell /usr/sbin/nologin "$user"
    echo "user $user created"
  fi
done
step "sudoers"
install -d -m 0750 /etc/sudoers.d
visudo -cqf "$here/sudoers/10spark-builder" >/dev/null || fail "the sudoers rule does not parse"
install -o root -g root -m 0440 "$here/sudoers/10spark-builder" /etc/sudoers.d/10spark-builder
echo "spark-builder may run $helper as root, nothing else"

step "systemd units"
for unit in spark-connector.service spark-builder@.service spark-signer.service spark-uploader.service spark.target; do
  install -o root -g root -m 0644 "$here/systemd/$unit" "$unitdir/$unit"
done
echo "units installed in $unitdir"

# What depends on spark.toml: directories, keys' owners, Redis, drop-ins, log rotation, start.
SPARK_NODE=$node SPARK_CLI=$root/apps/cli/dist/main.js SPARK_LOGROTATE=$here/logrotate/spark SPARK_WRITER=deploy/install.sh \
  SPARK_AGAIN='bash deploy/install.sh' bash "$here/setup-host.sh" "$@"
echo "spark worker installed from $root"
