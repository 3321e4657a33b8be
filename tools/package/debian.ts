/** The Debian metadata of the spark-ts package: control, copyright, changelog, md5sums. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { ThirdParty } from './bundle.js';

/** The four services, each with a command in /usr/sbin and a page in section 8. */
export const SERVICES = ['connector', 'builder', 'signer', 'uploader'] as const;

/**
 * What the services and the build helper run, and what their setup needs:
 * nodejs 20.19 or newer (Debian 13 has it; Debian 12 hosts take NodeSource's
 * nodejs 20), redis-server for the worker's own instance, debspawn and what
 * it builds with, sudo for the build helper, dpkg-dev's dpkg-source (the
 * helper unpacks sources with it, sandboxed), git for OS image recipes,
 * ca-certificates for HTTPS uploads, logrotate for the audit log, systemd for
 * sysusers.d and tmpfiles.d, and what zeromq's addon links against.
 */
function depends(glibc: string): string[] {
  return [
    'nodejs (>= 20.19)',
    `libc6 (>= ${glibc})`,
    'libstdc++6',
    'libgcc-s1',
    'redis-server (>= 5:7)',
    'debspawn',
    'systemd-container',
    'debootstrap',
    'zstd',
    'sudo',
    'dpkg-dev',
    'git',
    'ca-certificates',
    'logrotate',
    'systemd',
  ];
}

/** The maintainer: DEBFULLNAME and DEBEMAIL as dch reads them, else the author of the commit built. */
function maintainer(): string {
  const { DEBFULLNAME: name, DEBEMAIL: email } = process.env;
  if (name && email) return `${name} <${email}>`;
  return execFileSync('git', ['log', '-1', '--format=%an <%ae>'], { encoding: 'utf8' }).trim();
}

export function control(options: { version: string; arch: string; installedKiB: number; glibc: string }): string {
  return `Package: spark-ts
Version: ${options.version}
Architecture: ${options.arch}
Maintainer: ${maintainer()}
Installed-Size: ${options.installedKiB}
Depends: ${depends(options.glibc).join(', ')}
Recommends: gnupg
Section: admin
Priority: optional
Homepage: https://github.com/lkhq/laniakea
Description: build worker for the Laniakea Debian archive suite
 A drop-in replacement for laniakea-spark on a build host: the same
 /etc/laniakea/spark.toml, key files, Lighthouse protocol and uploads, split
 into four services so that the OpenPGP secret key never shares a process
 with untrusted build output and no job is lost or done twice on a crash:
 spark-connector (talks to Lighthouse over CurveZMQ), spark-builder (builds
 in debspawn containers through a root-owned build helper run with sudo),
 spark-signer and spark-uploader, started by spark.target, and the spark
 command for operators.
`;
}

/** The package's copyright file: spark-ts's license, then each bundled npm package's. */
export function copyright(version: string, thirdParty: readonly ThirdParty[]): string {
  const parts = [
    `spark-ts ${version}, the build worker for Laniakea.

License: LGPL-3.0-or-later
 This program is free software: you can redistribute it and/or modify it
 under the terms of the GNU Lesser General Public License as published by the
 Free Software Foundation, either version 3 of the License, or (at your
 option) any later version.
 .
 On Debian systems, the complete text of the GNU Lesser General Public
 License version 3 can be found in /usr/share/common-licenses/LGPL-3.

The programs in /usr/lib/spark-ts are bundles that include the following npm
packages; zeromq, its addon loader cmake-ts, openpgp and @bull-board/ui are
shipped as they are in /usr/lib/spark-ts/node_modules. Each package's name,
version and license follow, with its license text where the package has one.
`,
  ];
  for (const pkg of thirdParty) {
    parts.push(`${'-'.repeat(78)}\n${pkg.name} ${pkg.version}\nLicense: ${pkg.license}\n`);
    if (pkg.licenseText)
      parts.push(
        pkg.licenseText
          .trimEnd()
          .split('\n')
          .map((line) => (line.trim() === '' ? ' .' : ` ${line}`))
          .join('\n') + '\n',
      );
  }
  return parts.join('\n');
}

/** changelog.Debian: one entry for this build, dated by the commit it is built from. */
export function changelog(version: string, commit: string, epochSeconds: number): Buffer {
  const date = new Date(epochSeconds * 1000).toUTCString().replace('GMT', '+0000');
  return Buffer.from(`spark-ts (${version}) unstable; urgency=medium

  * Built from commit ${commit}.

 -- ${maintainer()}  ${date}
`);
}

/** DEBIAN/md5sums: every file below `stage` but DEBIAN/. */
export async function md5sums(stage: string): Promise<string> {
  const entries = await readdir(stage, { withFileTypes: true, recursive: true });
  const files = entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(stage, join(entry.parentPath, entry.name)))
    .filter((path) => !path.startsWith('DEBIAN/'))
    .sort();
  const lines = await Promise.all(
    files.map(
      async (path) =>
        `${createHash('md5')
          .update(await readFile(join(stage, path)))
          .digest('hex')}  ${path}`,
    ),
  );
  return `${lines.join('\n')}\n`;
}
