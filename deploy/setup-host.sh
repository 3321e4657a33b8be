#!/usr/bin/env bash
# Sets a spark worker host up from its spark.toml: what depends on the
# configuration. The Debian package installs it as
# /usr/lib/spark-ts/setup-host and its postinst runs it (at each install and
# upgrade, and again on `dpkg-reconfigure spark-ts`); deploy/install.sh, which
# builds the package from a checkout and installs it, reaches it only that
# way. Idempotent: run it again (dpkg-reconfigure spark-ts) after changing
# spark.toml (WorkspaceRoot, RedisUrl, RedisMaxMemory, [signer] AuditLog …)
# or the keys.
#   1. the workspace root, the audit log's directory, the key files' owners
#   2. the worker's own Redis instance, redis-server@spark (Debian's template
#      unit, its config in /etc/redis/redis-spark.conf; the host's
#      /etc/redis/redis.conf is left alone), with one ACL user per service
#      (passwords in /etc/laniakea/redis) and the default user off; RedisUrl
#      and RedisCredentialsDir are added to spark.toml when it lacks them
#   3. the units' drop-ins for WorkspaceRoot and AuditLog
#   4. log rotation of the signer's audit log (logrotate) and expiry of old
#      build logs and leftover workspaces (systemd-tmpfiles)
#   5. (--enable) enables and starts spark.target
# The users, the units, the sudoers rule and the commands are the package's.
# Files it generates start with "# Written by $SPARK_WRITER" (the package:
# /usr/lib/spark-ts/setup-host; those an earlier install.sh had it write say
# deploy/install.sh, and are its own too); remove that line from one to keep
# your own version (it is then left alone).
#   SPARK_NODE=node SPARK_CLI=.../cli/dist/main.js SPARK_LOGROTATE=.../logrotate/spark SPARK_WRITER=name \
#     [SPARK_AGAIN='how to run it again'] setup-host [--enable]
set -euo pipefail
node=${SPARK_NODE:?the node executable}
cli=${SPARK_CLI:?the entry of the spark command, .../cli/dist/main.js}
logrotate_template=${SPARK_LOGROTATE:?the logrotate template, deploy/logrotate/spark}
writer=${SPARK_WRITER:?the name the files it writes give as their writer}
# How the operator runs this again (the package: dpkg-reconfigure spark-ts).
again=${SPARK_AGAIN:-$writer}
config=${SPARK_CONFIG:-/etc/laniakea/spark.toml}
enable=false
[ "${1:-}" = "--enable" ] && enable=true
# Set when the services must start again to see a change (spark.toml, a drop-in).
restart_services=false
# The signer's logs directory (LogsDirectory=spark-signer in its unit): its audit log goes there by default.
signer_logs=/var/log/spark-signer

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "$writer: $*" >&2
  exit 1
}
systemd=false
[ -d /run/systemd/system ] && systemd=true
marker="# Written by $writer"
# Files either installation wrote are this script's to rewrite (a host may move from the checkout to the package).
ours='^# Written by (deploy/install\.sh|/usr/lib/spark-ts/setup-host)( |$)'
# generated PATH MODE OWNER GROUP < CONTENT: writes a file this script owns when its content,
# mode or owner differ (returns 0), else returns 1. A file whose first line is no longer the
# marker was taken over by hand: it is left as it is (returns 1), and said so.
generated() {
  local path=$1 mode=$2 owner=$3 group=$4 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$path" ] && ! head -n 1 "$path" | grep -qE "$ours"; then
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

step "directories and keys"
effective='{}'
if [ -f "$config" ]; then
  [ "$(stat -c %u "$config")" = 0 ] && [ $((0$(stat -c %a "$config") & 022)) -eq 0 ] ||
    fail "$config must be owned by root and not writable by group or others (the build helper trusts it)"
  # As the signer sees it under systemd: its audit log's default is in its LogsDirectory=.
  effective=$(LOGS_DIRECTORY=$signer_logs "$node" "$cli" config check --config "$config") ||
    fail "fix $config first (spark config check above)"
  chmod 0644 "$config"
else
  echo "no $config yet: write it (README, step 2), then run $again"
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
      echo "# Added by $writer: the worker's own Redis (redis-server@spark), each service logged in as its own user (README, \"Redis users\")."
      printf '%s\n' "${additions[@]}"
      cat "$config"
    } >"$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$config"
    effective=$(LOGS_DIRECTORY=$signer_logs "$node" "$cli" config check --config "$config") ||
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
    "$node" "$cli" redis-acl --config "$config" --acl-file "$acl_file"
    conf_changed=false
    if generated "$instance_conf" 640 root redis <<EOF; then conf_changed=true; fi
$marker from RedisUrl and RedisMaxMemory in $config: run $again after changing them.
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
  # Earlier versions of deploy/install.sh set the host's default instance up for spark.
  if [ -f /etc/redis/redis.conf ] && grep -qE "^aclfile $acl_file\$" /etc/redis/redis.conf; then
    echo "note: /etc/redis/redis.conf still has \"aclfile $acl_file\" (and the port and maxmemory lines) an earlier deploy/install.sh wrote: the worker now runs its own Redis; restore that file, or disable redis-server.service if nothing else uses it (README, \"Upgrading\")"
  fi
else
  echo "Redis: waits for $config (run $again once it is written)"
fi

step "the units' drop-ins"
if [ -f "$config" ]; then
  # The signer and the uploader run with ProtectSystem=strict: they may write the workspaces (and the
  # signer its audit log) only where a drop-in says, so the drop-ins follow WorkspaceRoot and AuditLog.
  signer_paths=$workspaces_dir
  [ "$audit_dir" = "$signer_logs" ] || signer_paths="$signer_paths $audit_dir"
  for unit in spark-signer spark-uploader; do
    paths=$workspaces_dir
    [ "$unit" = spark-uploader ] || paths=$signer_paths
    if generated "/etc/systemd/system/$unit.service.d/workspace.conf" 644 root root <<EOF; then restart_services=true; fi
$marker from WorkspaceRoot$([ "$unit" = spark-signer ] && echo " and [signer] AuditLog") in $config: run $again after changing them.
[Service]
ReadWritePaths=$paths
EOF
  done
  echo "spark-signer may write $signer_paths; spark-uploader $workspaces_dir"

  step "log rotation and expiry"
  # The audit log: rotated monthly, the signer reopens it on reload (deploy/logrotate/spark).
  generated /etc/logrotate.d/spark 644 root root <<EOF || true
$marker from deploy/logrotate/spark and [signer] AuditLog in $config.
$(sed "s|^/var/log/spark-signer/signer.log {|$audit_log {|" "$logrotate_template")
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
$marker from WorkspaceRoot in $config: run $again after changing it.
# systemd-tmpfiles-clean.timer (daily) removes what was last modified longer ago than the age.
e $logs_dir - - - m:30d
e $workspaces_dir - - - mM:${round_days}d
# Members of spark-operators read the build logs (spark logs): they pass through $workspace_root
# without listing it, list $logs_dir and read the logs written from now on (the default ACL; the
# mode a log is created with still limits it to reading). The workspaces stay lkspark's alone.
a+ $workspace_root - - - - group:spark-operators:--x
a+ $logs_dir - - - - group:spark-operators:r-x,default:group:spark-operators:r-x
EOF
  systemd-tmpfiles --create /etc/tmpfiles.d/spark.conf ||
    fail "systemd-tmpfiles could not apply /etc/tmpfiles.d/spark.conf (see above): does the file system of $workspace_root support POSIX ACLs?"
  echo "/etc/tmpfiles.d/spark.conf: build logs expire after 30 days, leftover workspaces after $round_days; spark-operators read the build logs"
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
