#!/usr/bin/env bash
# The README's setup command for a development or test machine: everything the
# services and the tests need on a fresh Debian 12 host, idempotent (a second
# run changes nothing). A production worker is installed with deploy/install.sh,
# which installs only what the services run.
#   1. Debian packages (apt): Redis, debspawn and what it runs on, gnupg, devscripts …
#   2. npm dependencies (npm ci, no install scripts) and the build of every project
#   3. the spark, spark-connector, spark-builder, spark-signer, spark-uploader commands on PATH
#   4. the debspawn image for the suite in SPARK_SETUP_SUITE (default bookworm)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=${SPARK_SETUP_SUITE:-bookworm}
bindir=${SPARK_SETUP_BINDIR:-/usr/local/bin}
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

step() { printf '\n==> %s\n' "$*"; }

apt_packages=(
  redis-server            # the queues (BullMQ) and the tests' private servers
  debspawn systemd-container debootstrap zstd   # builds in containers
  gnupg                   # gpgv to verify signatures; gpg to make keys
  devscripts              # dscverify, dget
  dpkg-dev build-essential fakeroot             # dpkg-source/dpkg-buildpackage for test packages
  lintian                 # npm run package checks the .deb with it (tools/test/package.test.ts, the deploy tests)
  dpkg-repack             # test:package installs this host's nodejs (NodeSource's) in its bookworm machine as a .deb
  dput-ng                 # reference uploader the tests compare against
  python3-zmq             # pyzmq: checks our Curve key files as Laniakea reads them
  python3-tomlkit python3-debian   # laniakea-spark's imports, for the side-by-side bench (docs/benchmarks.md)
  sudo                    # the builder runs debspawn through sudo when not root
  chromium                # the dashboard test opens the page in headless Chromium
  libxml2-utils           # xmllint: the builder test validates Firehose reports against firehose.rng
  groff-base              # groff: the manual pages test renders them
  git ca-certificates curl
)

step "Debian packages"
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi

step "npm dependencies"
cd "$root"
npm ci --no-audit --no-fund

step "build"
NX_DAEMON=false NX_TUI=false npx nx run-many -t build --outputStyle=static

step "commands on PATH ($bindir)"
declare -A bins=(
  [spark]=apps/cli/dist/main.js
  [spark-connector]=apps/connector/dist/main.js
  [spark-builder]=apps/builder/dist/main.js
  [spark-signer]=apps/signer/dist/main.js
  [spark-uploader]=apps/uploader/dist/main.js
)
for name in "${!bins[@]}"; do
  # A small launcher rather than a symlink: a rebuild rewrites dist/ (and drops
  # the executable bit), the launcher keeps working.
  launcher=$(mktemp)
  printf '#!/bin/sh\nexec node %q "$@"\n' "$root/${bins[$name]}" > "$launcher"
  $sudo install -m 0755 "$launcher" "$bindir/$name"
  rm -f "$launcher"
  echo "$bindir/$name runs $root/${bins[$name]}"
done

step "debspawn image for $suite"
# Hosts without a system bus need systemd-nspawn --keep-unit --register=no: the
# build helper's wrapper (apps/build-helper/sandbox/bin), which the builder uses too.
if [ ! -S /run/dbus/system_bus_socket ]; then
  export PATH="$root/apps/build-helper/sandbox/bin:$PATH"
fi
images=$($sudo debspawn list 2>/dev/null || true)
if grep -q "^\[$suite-" <<<"$images"; then
  echo "image $suite exists (update it with: debspawn update $suite)"
else
  echo "creating image $suite (about a minute)…"
  $sudo env PATH="$PATH" debspawn create "$suite"
fi

step "check"
spark config check --config "$root/libs/config/test/fixtures/seed-spark.toml" >/dev/null 2>&1 \
  && echo "spark config check works" \
  || { echo "spark config check failed" >&2; exit 1; }
echo "setup complete"
