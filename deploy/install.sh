#!/usr/bin/env bash
# Puts the spark services in place on a host (the seed guide's steps 1 and 7):
# one system user per service in the shared group lkspark, the workspace,
# log and audit directories, the key file owners, the sudoers rule for the
# builder, and the systemd units. Idempotent. Run as root after scripts/setup.sh.
#   bash tools/systemd/install.sh [--enable]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
config=${SPARK_CONFIG:-/etc/laniakea/spark.toml}
unitdir=${SPARK_UNIT_DIR:-/etc/systemd/system}
enable=false
[ "${1:-}" = "--enable" ] && enable=true

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

getent group lkspark >/dev/null || groupadd --system lkspark
for user in spark-connector spark-builder spark-signer spark-uploader; do
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --gid lkspark --home-dir /var/lib/lkspark --no-create-home --shell /usr/sbin/nologin "$user"
    echo "user $user created"
  fi
done

# Directories: workspaces and logs shared by the group (setgid, so new files
# stay in lkspark); the audit log is the signer's alone.
effective='{}'
if [ -f "$config" ]; then
  effective=$(spark config check --config "$config") || { echo "install.sh: fix $config first (spark config check above)" >&2; exit 2; }
fi
field() { printf '%s' "$effective" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1') or '')"; }
workspace_root=$(field workspaceRoot)
workspace_root=${workspace_root:-/var/lib/lkspark/}
install -d -o root -g lkspark -m 2770 "$workspace_root" "$workspace_root/workspaces" "$workspace_root/logs"
install -d -o spark-signer -g lkspark -m 0700 "$workspace_root/audit"

# Keys: the connector alone reads the Curve secret key, the signer alone the OpenPGP key.
curve=$(field curveSecretKeyFile)
gpgkey=$(field gpgSecretKeyFile)
if [ -n "$curve" ] && [ -f "$curve" ]; then chown spark-connector: "$curve"; chmod 0600 "$curve"; echo "$curve: spark-connector only"; fi
if [ -n "$gpgkey" ] && [ -f "$gpgkey" ]; then chown spark-signer: "$gpgkey"; chmod 0600 "$gpgkey"; echo "$gpgkey: spark-signer only"; fi

install -d -m 0750 /etc/sudoers.d
install -m 0440 "$here/../sudoers/10spark-builder" /etc/sudoers.d/10spark-builder
if command -v visudo >/dev/null; then visudo -cf /etc/sudoers.d/10spark-builder >/dev/null; fi

for unit in spark-connector.service spark-builder@.service spark-signer.service spark-uploader.service spark.target; do
  install -m 0644 "$here/$unit" "$unitdir/$unit"
done
echo "units installed in $unitdir"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if $enable; then systemctl enable --now spark.target; fi
else
  echo "systemd is not running here: on the real host run 'systemctl enable --now spark.target'; without systemd, 'spark run'"
fi
echo "spark services installed from $root"
