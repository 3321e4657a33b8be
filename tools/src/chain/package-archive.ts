import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { isSafeFileName } from '@spark/protocol';
import { makeSourcePackage, type SourcePackageSpec } from '@spark/testing';
import type { StandInJob } from '@spark/testing';

/** A tiny archive serving source packages over HTTP, and the package-build jobs that point at them. */
export interface PackageArchive {
  url: string;
  /** Makes a source package and returns the Lighthouse job that builds it. */
  packageJob(spec: SourcePackageSpec, options?: { uuid?: string; repo?: string; suite?: string }): Promise<StandInJob>;
  close(): Promise<void>;
}

/** Serves `<dir>/<file>` read-only on 127.0.0.1 (plain file names only). */
export async function startPackageArchive(dir: string): Promise<PackageArchive> {
  await mkdir(dir, { recursive: true });
  const server: Server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').slice(1));
    if (req.method !== 'GET' || !isSafeFileName(name)) {
      res.writeHead(404).end();
      return;
    }
    const stream = createReadStream(join(dir, name));
    stream.once('error', () => res.writeHead(404).end());
    stream.once('open', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      stream.pipe(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    async packageJob(spec, options = {}) {
      const pkg = await makeSourcePackage(dir, spec);
      const sha256sum = createHash('sha256')
        .update(await readFile(pkg.dsc))
        .digest('hex');
      const uuid = options.uuid ?? randomUUID();
      return {
        uuid,
        module: 'core',
        kind: 'package-build',
        version: spec.version,
        architecture: spec.architecture === 'all' ? 'all' : 'amd64',
        time_created: new Date().toISOString().slice(0, 19),
        repo: options.repo ?? 'master',
        data: {
          package_name: spec.name,
          package_version: spec.version,
          maintainer: 'Spark Tests <spark-tests@example.org>',
          suite: options.suite ?? spec.distribution ?? 'bookworm',
          dsc_url: `${url}/${basename(pkg.dsc)}`,
          sha256sum,
          do_indep: false,
        },
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
