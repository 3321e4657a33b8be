#!/usr/bin/env bash
# Installs a spark worker on a Debian 12 host for production, from a
# root-owned checkout (we suggest /opt/spark-ts). Idempotent: run it again
# after changing spark.toml (WorkspaceRoot, RedisUrl, RedisMaxMemory,
# [signer] AuditLog …) or the keys.
#   1. runtime Debian packages only (no compilers, browsers or test tools)
#   2. the build (npm ci and nx build, skipped when dist/ is already there)
#   3. the commands: spark, spark-connector, spark-builder, spark-signer,
#      spark-uploader in /usr/local/bin, the build helper in /usr/local/sbin,
#      their manual pages and spark's bash completion
#   4. one system user per service in the group lkspark, the directories,
#      the key files' owners
#   5. the worker's own Redis instance, redis-server@spark (Debian's template
#      unit, its config in /etc/redis/redis-spark.conf; the host's
#      /etc/redis/redis.conf is left alone), with one ACL user per service
#      (passwords in /etc/laniakea/redis) and the default user off; RedisUrl
#      and RedisCredentialsDir are added to spark.toml when it lacks them
#   6. the sudoers rule (the builder may run the build helper as root, nothing else)
#   7. the systemd units, their drop-ins for WorkspaceRoot, and spark.target
#      (--enable also starts them)
#   8. log rotation of the signer's audit log (logrotate) and expiry of old
#      build logs and leftover workspaces (systemd-tmpfiles)
# Files it generates start with "# Written by deploy/install.sh"; remove that
# line from one to keep your own version (it is then left alone).
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
# Set when the services must start again to see a change (spark.toml, a drop-in).
restart_services=false
# The signer's logs directory (LogsDirectory=spark-signer in its unit): its audit log goes there by default.
signer_logs=/var/log/spark-signer

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "install.sh: $*" >&2
  exit 1
}
systemd=false
[ -d /run/systemd/system ] && systemd=true
marker='# Written by deploy/install.sh'
# generated PATH MODE OWNER GROUP < CONTENT: writes a file this script owns when its content,
# mode or owner differ (returns 0), else returns 1. A file whose first line is no longer the
# marker was taken over by hand: it is left as it is (returns 1), and said so.
generated() {
  local path=$1 mode=$2 owner=$3 group=$4 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$path" ] && ! head -n 1 "$path" | grep -qF "$marker"; then
    echo "$path: left as it is (its first line is not \"$marker …\": edited by hand)"
    rm -f "$tmp"
    return 1
  fi
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c '%a %U %G' "$path")" = "$mode $owner $group" ]; then
    rm -f "$tmp"
    return 1
  fi
  # Called as a condition, where set -e does not apply: a failure must still stop the script.
  install -D -o "$owner" -g "$group" -m "$mode" "$tmp" "$path" || fail "cannot write $path"
  rm -f "$tmp"
  echo "$path written"
}
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
  # As the signer sees it under systemd: its audit log's default is in its LogsDirectory=.
  effective=$(LOGS_DIRECTORY=$signer_logs "$node" "$root/apps/cli/dist/main.js" config check --config "$config") ||
    fail "fix $config first (spark config check above)"
  chmod 0644 "$config"
else
  echo "no $config yet: write it (README, step 2), then run this again"
fi
field() { printf '%s' "$effective" | "$node" -e 'let t="";process.stdin.on("data",(c)=>t+=c).on("end",()=>{const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],JSON.parse(t));console.log(v??"")})' "$1"; }
if [ -f "$config" ]; then
  workspace_root=$(field workspaceRoot)
  workspace_root=${workspace_root%/}
  # The units hide these from the services (ProtectHome=yes, PrivateTmp=yes): a workspace there is empty to them.
  case "$workspace_root/" in
    /home/* | /root/* | /run/user/* | /tmp/* | /var/tmp/*)
      fail "WorkspaceRoot $workspace_root is below /home, /root, /run/user, /tmp or /var/tmp, which the services' units hide from them (ProtectHome=yes, PrivateTmp=yes): choose another directory, e.g. /srv/lkspark, and mount the build disk there"
      ;;
  esac
  # The build helper follows no symbolic link on a path from /, so neither may WorkspaceRoot.
  resolved=$(realpath -m "$workspace_root")
  [ "$resolved" = "$workspace_root" ] ||
    fail "WorkspaceRoot $workspace_root passes through a symbolic link (it resolves to $resolved), which the build helper refuses: set WorkspaceRoot = '$resolved/' in $config"
  workspaces_dir=$workspace_root/workspaces
  logs_dir=$workspace_root/logs
  # Workspaces and logs are shared by the group (setgid, so new files stay in lkspark).
  install -d -o root -g lkspark -m 2770 "$workspace_root" "$workspaces_dir" "$logs_dir"
  # The audit log's directory, the signer's alone: $signer_logs (systemd also makes it, LogsDirectory=),
  # or the directory of [signer] AuditLog when spark.toml names another file.
  audit_log=$(field signer.auditLog)
  audit_dir=$(dirname "$audit_log")
  install -d -o spark-signer -g lkspark -m 0700 "$audit_dir"
  echo "$workspace_root: workspaces/, logs/ (lkspark); $audit_dir (spark-signer)"
  # Earlier versions kept the audit log in <WorkspaceRoot>/audit.
  if [ -f "$workspace_root/audit/signer.log" ] && [ "$audit_dir" != "$workspace_root/audit" ]; then
    echo "note: the signer's audit log is now $audit_log; the one written before stays in $workspace_root/audit/signer.log (keep it as long as you keep audit logs)"
  fi
else
  echo "the workspace root and the audit log's directory: once $config is written"
fi
# The build helper's private copies of build inputs and results: root's alone.
install -d -o root -g root -m 0700 /var/lib/spark-build-helper

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
    echo "$curve: missing (README step 3: spark keytool install-worker-key)"
  fi
fi
gpgkey=$(field gpgSecretKeyFile)
if [ -n "$gpgkey" ] && [ -f "$gpgkey" ]; then
  chown spark-signer:lkspark "$gpgkey"
  chmod 0600 "$gpgkey"
  echo "$gpgkey: spark-signer only"
fi

step "Redis: the worker's own instance, redis-server@spark"
# Debian's redis-server@.service runs /etc/redis/redis-<name>.conf; /etc/redis/redis.conf (the host's
# default instance, redis-server.service) stays as it is, whatever else uses it.
instance_conf=/etc/redis/redis-spark.conf
instance_socket=/run/redis-spark/redis-server.sock
instance_dir=/var/lib/redis/spark
acl_file=/etc/redis/spark-users.acl
credentials_dir=/etc/laniakea/redis
if [ -f "$config" ]; then
  # spark.toml names the instance and the passwords: added as top-level keys when missing (before any [table]).
  top_level_key() { awk -v key="$1" '/^[[:space:]]*\[/ { exit } $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { found = 1 } END { exit !found }' "$config"; }
  additions=()
  top_level_key RedisUrl || additions+=("RedisUrl = '$instance_socket'")
  if [ -z "$(field redisCredentialsDir)" ]; then
    additions+=("RedisCredentialsDir = '$credentials_dir'")
  else
    credentials_dir=$(field redisCredentialsDir)
    credentials_dir=${credentials_dir%/}
  fi
  if [ ${#additions[@]} -gt 0 ]; then
    tmp=$(mktemp "$(dirname "$config")/.spark.toml.XXXXXX")
    {
      echo "# Added by deploy/install.sh: the worker's own Redis (redis-server@spark), each service logged in as its own user (README, \"Redis users\")."
      printf '%s\n' "${additions[@]}"
      cat "$config"
    } >"$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$config"
    effective=$(LOGS_DIRECTORY=$signer_logs "$node" "$root/apps/cli/dist/main.js" config check --config "$config") ||
      fail "$config no longer checks after adding ${additions[*]}"
    for addition in "${additions[@]}"; do echo "$config: added $addition"; done
    restart_services=true
  fi
  redis_url=$(field redisUrl)
  # The instance serves RedisUrl when it is its socket (the default) or a port on loopback.
  redis_port=$("$node" -e '
    const [url, socket] = process.argv.slice(1);
    if (url === socket || url === `unix://${socket}`) console.log(0);
    else try { const u = new URL(url); if (u.protocol === "redis:" && ["127.0.0.1", "localhost", "[::1]"].includes(u.hostname)) console.log(u.port || "6379"); } catch {}
  ' "$redis_url" "$instance_socket")
  if [ -n "$redis_port" ]; then
    if [ "$redis_port" != 0 ] && [ -f /etc/redis/redis.conf ] && $systemd && systemctl --quiet is-enabled redis-server.service 2>/dev/null; then
      host_port=$(awk '$1 == "port" { port = $2 } END { print port == "" ? 6379 : port }' /etc/redis/redis.conf)
      [ "$host_port" != "$redis_port" ] ||
        fail "RedisUrl $redis_url names port $redis_port, where the host's own redis-server (/etc/redis/redis.conf) listens: remove RedisUrl from $config (the worker's Redis then listens on $instance_socket only) or name a free port"
    fi
    # A memory limit (RedisMaxMemory, bytes; 0 = none): past it Redis refuses writes (noeviction) instead of
    # growing until the OOM killer picks a process. The default is libs/config's DEFAULT_REDIS_MAX_MEMORY (1 GiB).
    redis_maxmemory=$(field redisMaxMemory)
    redis_maxmemory=${redis_maxmemory:-1073741824}
    acl_before=$(md5sum "$acl_file" 2>/dev/null || true)
    install -d -o redis -g redis -m 0750 "$instance_dir"
    install -d -o root -g root -m 0755 "$credentials_dir"
    # One Redis ACL user per service (README, "Trust boundary"): each logs in with its own password
    # from $credentials_dir, the default user is off. Prints file names only, never a password.
    "$node" "$root/apps/cli/dist/main.js" redis-acl --config "$config" --acl-file "$acl_file"
    conf_changed=false
    if generated "$instance_conf" 640 root redis <<EOF; then conf_changed=true; fi
$marker from RedisUrl and RedisMaxMemory in $config: run it again after changing them.
# The spark worker's own Redis, run by redis-server@spark.service (Debian's redis-server@.service).
port $redis_port
bind 127.0.0.1 -::1
unixsocket $instance_socket
# Anyone may connect, as to a port on loopback; without a password Redis refuses every command (aclfile).
unixsocketperm 666
pidfile /run/redis-spark/redis-server.pid
# To the journal (journalctl -u redis-server@spark).
logfile ""
dir $instance_dir
# Queued jobs and reports survive a crash of Redis or of the host: the append-only file, synced each second.
appendonly yes
# BullMQ's production guide: never evict a key. Past maxmemory Redis refuses writes; the services retry.
maxmemory $redis_maxmemory
maxmemory-policy noeviction
# One user per service, the default user off (spark redis-acl).
aclfile $acl_file
EOF
    if $systemd; then
      systemctl enable --quiet redis-server@spark.service
      if $conf_changed || [ "$acl_before" != "$(md5sum "$acl_file")" ] || ! systemctl --quiet is-active redis-server@spark.service; then
        systemctl reset-failed redis-server@spark.service 2>/dev/null || true
        systemctl restart redis-server@spark.service
      fi
    else
      echo "systemd is not running here: start it with 'redis-server $instance_conf'"
    fi
    echo "redis-server@spark on $instance_socket$([ "$redis_port" = 0 ] || echo " and 127.0.0.1:$redis_port"), maxmemory $redis_maxmemory bytes, noeviction, append-only; users in $acl_file, default user off"
  else
    echo "RedisUrl $redis_url is not the worker's own Redis ($instance_socket, or a port on loopback): configure that Redis yourself (README, \"Redis users\": spark redis-acl)"
  fi
  # Earlier versions of this script set the host's default instance up for spark.
  if [ -f /etc/redis/redis.conf ] && grep -qE "^aclfile $acl_file\$" /etc/redis/redis.conf; then
    echo "note: /etc/redis/redis.conf still has \"aclfile $acl_file\" (and the port and maxmemory lines) an earlier install.sh wrote: the worker now runs its own Redis; restore that file, or disable redis-server.service if nothing else uses it (README, \"Upgrading\")"
  fi
else
  echo "Redis: waits for $config (run this again once it is written)"
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
if [ -f "$config" ]; then
  # The signer and the uploader run with ProtectSystem=strict: they may write the workspaces (and the
  # signer its audit log) only where a drop-in says, so the drop-ins follow WorkspaceRoot and AuditLog.
  signer_paths=$workspaces_dir
  [ "$audit_dir" = "$signer_logs" ] || signer_paths="$signer_paths $audit_dir"
  for unit in spark-signer spark-uploader; do
    paths=$workspaces_dir
    [ "$unit" = spark-uploader ] || paths=$signer_paths
    if generated "$unitdir/$unit.service.d/workspace.conf" 644 root root <<EOF; then restart_services=true; fi
$marker from WorkspaceRoot$([ "$unit" = spark-signer ] && echo " and [signer] AuditLog") in $config: run it again after changing them.
[Service]
ReadWritePaths=$paths
EOF
  done
  echo "spark-signer may write $signer_paths; spark-uploader $workspaces_dir"

  step "log rotation and expiry"
  # The audit log: rotated monthly, the signer reopens it on reload (deploy/logrotate/spark).
  generated /etc/logrotate.d/spark 644 root root <<EOF || true
$marker from deploy/logrotate/spark and [signer] AuditLog in $config.
$(sed "s|^/var/log/spark-signer/signer.log {|$audit_log {|" "$here/logrotate/spark")
EOF
  echo "/etc/logrotate.d/spark: $audit_log rotated monthly, 24 kept"
  # Build logs stay in $logs_dir after their workspace is gone: removed 30 days after their last write
  # (their copy went to the archive with the .dud). A workspace is removed when its round ends; one
  # left behind (a refused sign job, a crash) goes once nothing in it changed for longer than a round
  # can last: MaxBuildTime and the uploader's GiveUpAfter, plus a week, and at least 30 days.
  build_ms=$(field builder.maxBuildTimeMs)
  upload_ms=$(field uploader.giveUpAfterMs)
  round_days=$(((build_ms + upload_ms) / 86400000 + 8))
  [ "$round_days" -ge 30 ] || round_days=30
  generated /etc/tmpfiles.d/spark.conf 644 root root <<EOF || true
$marker from WorkspaceRoot in $config: run it again after changing it.
# systemd-tmpfiles-clean.timer (daily) removes what was last modified longer ago than the age.
e $logs_dir - - - m:30d
e $workspaces_dir - - - mM:${round_days}d
EOF
  echo "/etc/tmpfiles.d/spark.conf: build logs expire after 30 days, leftover workspaces after $round_days"
else
  echo "the units' drop-ins for WorkspaceRoot, log rotation and expiry: once $config is written"
fi

step "start"
if $systemd; then
  systemctl daemon-reload
  # Running services see a new RedisUrl, RedisCredentialsDir or drop-in only when they start again.
  if $restart_services; then systemctl try-restart spark-connector.service 'spark-builder@*.service' spark-signer.service spark-uploader.service; fi
  if $enable; then systemctl enable --now spark.target; fi
else
  echo "systemd is not running here: on the real host run 'systemctl enable --now spark.target'; without systemd, 'spark run'"
fi
echo "spark worker installed from $root"
