/*
 * The programs as the Debian package installs them: esbuild bundles laid out
 * as in /usr/lib/spark-ts, made by the package's own bundle code
 * (tools/package/bundle.ts) into a temporary directory, for the benchmarks to
 * run what operators run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundlePrograms } from '../package/bundle.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A directory holding the bundles, like /usr/lib/spark-ts; `close` removes it. */
export interface BenchBundles {
  dir: string;
  /** The `spark` command's bundle: its entry (its commands' chunks are in `dist/chunks/` beside it). */
  cli: string;
  close(): Promise<void>;
}

/** Bundles every program as `npm run package` does, for this machine's architecture. */
export async function buildBundles(): Promise<BenchBundles> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-bench-bundles-'));
  const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  await bundlePrograms(ROOT, dir, arch);
  return {
    dir,
    cli: join(dir, 'node_modules/@spark/cli/dist/main.js'),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The services' environment as their units give it: systemd starts them with
 * a clean one, so NODE_EXTRA_CA_CERTS — set on some build machines, where it
 * makes every node process parse that CA bundle as it starts (60 ms of CPU
 * and 2 MiB per process for Debian's 140 certificates here, docs/benchmarks.md)
 * — is not in it. Removes it from this process's environment, which the
 * benchmarks' services and baselines inherit; returns a line saying so, or null.
 */
export function environmentAsUnits(): string | null {
  const extra = process.env['NODE_EXTRA_CA_CERTS'];
  if (extra === undefined) return null;
  delete process.env['NODE_EXTRA_CA_CERTS'];
  return `NODE_EXTRA_CA_CERTS=${extra} removed from the environment (the units do not set it; it costs each node process a parse of that file at start)`;
}
