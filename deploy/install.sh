#!/usr/bin/env bash
# Installs a spark worker on a Debian 12 host for production, from a
# root-owned checkout (we suggest /opt/spark-ts). Idempotent: run it again
# after changing spark.toml or the keys.
#   1. runtime Debian packages only (no compilers, browsers or test tools)
#   2. the build (npm ci and nx build, skipped when dist/ is already there)
#   3. the commands: spark, spark-connector, spark-builder, spark-signer,
#      spark-uploader in /usr/local/bin, the build helper in /usr/local/sbin
#   4. one system user per service in the group lkspark, the directories,
#      the key files' owners
#   5. the local Redis as spark.toml's RedisUrl says, with one ACL user per
#      service (passwords in /etc/laniakea/redis, RedisCredentialsDir added to
#      spark.toml when it lacks it) and the default user off
#   6. the sudoers rule (the builder may run the build helper as root, nothing else)
#   7. the systemd units and spark.target (--enable also starts them)
# The development/test machine setup is scripts/setup.sh, not this.
#   bash deploy/install.sh [--enable]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
config=${SPARK_CONFIG:-/etc/laniakea/spark.toml}
unitdir=/etc/systemd/system
bindir=/usr/local/bin
helper=/usr/local/sbin/spark-build-helper
enable=false
[ "${1:-}" = "--enable" ] && enable=true
config_changed=false

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "install.sh: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root"

step "Debian packages (runtime)"
packages=(
  redis-server                                 # the queues
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

step "users and directories"
getent group lkspark >/dev/null || groupadd --system lkspark
getent group spark-operators >/dev/null || groupadd --system spark-operators
for user in spark-connector spark-builder spark-signer spark-uploader; do
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --gid lkspark --home-dir /var/lib/lkspark --no-create-home --shell /usr/sbin/nologin "$user"
    echo "user $user created"
  fi
done
effective='{}'
if [ -f "$config" ]; then
  [ "$(stat -c %u "$config")" = 0 ] && [ $((0$(stat -c %a "$config") & 022)) -eq 0 ] ||
    fail "$config must be owned by root and not writable by group or others (the build helper trusts it)"
  effective=$("$node" "$root/apps/cli/dist/main.js" config check --config "$config") || fail "fix $config first (spark config check above)"
  chmod 0644 "$config"
else
  echo "no $config yet: write it (README, step 1), then run this again"
fi
field() { printf '%s' "$effective" | "$node" -e 'let t="";process.stdin.on("data",(c)=>t+=c).on("end",()=>{const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],JSON.parse(t));console.log(v??"")})' "$1"; }
workspace_root=$(field workspaceRoot)
workspace_root=${workspace_root:-/var/lib/lkspark/}
workspace_root=${workspace_root%/}
# Workspaces and logs are shared by the group (setgid, so new files stay in lkspark).
install -d -o root -g lkspark -m 2770 "$workspace_root" "$workspace_root/workspaces" "$workspace_root/logs"
install -d -o spark-signer -g lkspark -m 0700 "$workspace_root/audit"
# The build helper's private copies of build inputs and results: root's alone.
install -d -o root -g root -m 0700 /var/lib/spark-build-helper
echo "$workspace_root: workspaces/, logs/ (lkspark), audit/ (spark-signer); /var/lib/spark-build-helper (root)"

# Keys: the connector alone reads the Curve secret key, the signer alone the OpenPGP key.
curve=$(field curveSecretKeyFile)
if [ -n "$curve" ]; then
  # CurveKeysDir holds Lighthouse's public key; secret/ is the connector's (spark keytool
  # install-worker-key gives a key the owner of its directory).
  install -d -m 0755 "$(dirname "$(dirname "$curve")")"
  install -d -o spark-connector -g lkspark -m 0700 "$(dirname "$curve")"
  if [ -f "$curve" ]; then
    chown spark-connector:lkspark "$curve"
    chmod 0600 "$curve"
    echo "$curve: spark-connector only"
  else
    echo "$curve: missing (README step 2: spark keytool install-worker-key)"
  fi
fi
gpgkey=$(field gpgSecretKeyFile)
if [ -n "$gpgkey" ] && [ -f "$gpgkey" ]; then
  chown spark-signer:lkspark "$gpgkey"
  chmod 0600 "$gpgkey"
  echo "$gpgkey: spark-signer only"
fi

step "Redis"
redis_conf=/etc/redis/redis.conf
redis_url=$(field redisUrl)
redis_url=${redis_url:-redis://127.0.0.1:6379}
redis_port=$("$node" -e 'try{const u=new URL(process.argv[1]);if(u.protocol==="redis:"&&["127.0.0.1","localhost","[::1]"].includes(u.hostname))console.log(u.port||"6379")}catch{}' "$redis_url")
acl_file=/etc/redis/spark-users.acl
credentials_dir=/etc/laniakea/redis
if [ -n "$redis_port" ] && [ -f "$redis_conf" ]; then
  before=$(md5sum "$redis_conf")
  acl_before=$(md5sum "$acl_file" 2>/dev/null || true)
  sed -i -E "s/^#? *port [0-9]+\$/port $redis_port/" "$redis_conf"
  # BullMQ's production guide: never evict keys.
  if grep -qE '^#? *maxmemory-policy ' "$redis_conf"; then
    sed -i -E 's/^#? *maxmemory-policy .*/maxmemory-policy noeviction/' "$redis_conf"
  else
    echo 'maxmemory-policy noeviction' >>"$redis_conf"
  fi
  # A memory limit (RedisMaxMemory, bytes; 0 = none): past it Redis refuses writes (noeviction) instead of
  # growing until the OOM killer picks a process. The default is libs/config's DEFAULT_REDIS_MAX_MEMORY
  # (1 GiB), also used before spark.toml exists.
  redis_maxmemory=$(field redisMaxMemory)
  redis_maxmemory=${redis_maxmemory:-1073741824}
  if grep -qE '^#? *maxmemory [0-9<]' "$redis_conf"; then
    sed -i -E "s/^#? *maxmemory [0-9<].*/maxmemory $redis_maxmemory/" "$redis_conf"
  else
    echo "maxmemory $redis_maxmemory" >>"$redis_conf"
  fi
  # One Redis ACL user per service (README, "Trust boundary"): each logs in with
  # its own password from $credentials_dir, the default user is off, so a
  # client without a password can do nothing. Needs spark.toml (QueuePrefix).
  if [ -f "$config" ]; then
    # requirepass and users defined in redis.conf cannot live beside an aclfile.
    if grep -qE '^(requirepass|user) ' "$redis_conf"; then
      fail "$redis_conf sets requirepass or user: remove them, the users will be in $acl_file"
    fi
    configured_dir=$(field redisCredentialsDir)
    if [ -z "$configured_dir" ]; then
      # A top-level key goes before any [table]: the first line is always valid TOML.
      tmp=$(mktemp "$(dirname "$config")/.spark.toml.XXXXXX")
      {
        echo "# Added by deploy/install.sh: each service logs in to Redis as its own user (README, \"Trust boundary\")."
        echo "RedisCredentialsDir = '$credentials_dir'"
        cat "$config"
      } >"$tmp"
      chmod 0644 "$tmp"
      mv "$tmp" "$config"
      effective=$("$node" "$root/apps/cli/dist/main.js" config check --config "$config") || fail "$config no longer checks after adding RedisCredentialsDir"
      echo "$config: RedisCredentialsDir = '$credentials_dir' added"
      config_changed=true
    else
      credentials_dir=${configured_dir%/}
    fi
    install -d -o root -g root -m 0755 "$credentials_dir"
    # Prints file names only, never a password.
    "$node" "$root/apps/cli/dist/main.js" redis-acl --config "$config" --acl-file "$acl_file"
    if grep -qE '^#? *aclfile ' "$redis_conf"; then
      sed -i -E "s|^#? *aclfile .*|aclfile $acl_file|" "$redis_conf"
    else
      echo "aclfile $acl_file" >>"$redis_conf"
    fi
  else
    echo "Redis users: wait for $config (run this again once it is written)"
  fi
  if [ -d /run/systemd/system ]; then
    systemctl enable --quiet redis-server
    if [ "$before" != "$(md5sum "$redis_conf")" ] || [ "$acl_before" != "$(md5sum "$acl_file" 2>/dev/null || true)" ] ||
      ! systemctl is-active --quiet redis-server; then
      systemctl reset-failed redis-server 2>/dev/null || true
      systemctl restart redis-server
    fi
  fi
  echo "redis-server on 127.0.0.1:$redis_port, maxmemory $redis_maxmemory bytes, maxmemory-policy noeviction$([ -f "$config" ] && echo ", users in $acl_file, default user off")"
else
  echo "RedisUrl $redis_url is not this host's redis-server on loopback: configure it yourself (README, \"Trust boundary\": spark redis-acl)"
fi

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
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  # Services started before spark.toml named their Redis passwords must log in anew.
  if $config_changed; then systemctl try-restart spark-connector.service 'spark-builder@*.service' spark-signer.service spark-uploader.service; fi
  if $enable; then systemctl enable --now spark.target; fi
else
  echo "systemd is not running here: on the real host run 'systemctl enable --now spark.target'; without systemd, 'spark run'"
fi
echo "spark worker installed from $root"
