import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { buildSync, type BuildOptions } from 'esbuild';

/**
 * How tests start a workspace program's TypeScript entry as a process (a
 * service's `src/main.ts`, the `spark` CLI, the build helper): node's
 * arguments before the program's own.
 *
 * An entry under a package's `src/` runs from an esbuild bundle of it and
 * everything it imports, built on first use and rebuilt when any file it was
 * made from changes. Started through tsx instead, every module the program
 * loads (bullmq's and openpgp's too) passes through tsx's loader thread: 1.5 s
 * of CPU for the signer to print `--version`, against 0.45 s from the bundle
 * (docs/testing.md), and the tests start such processes a hundred times.
 *
 * The bundle sits where the build puts the entry's JavaScript (`src/` →
 * `dist/`, the same depth below the package), so what the program finds
 * beside itself (`../package.json`, the build helper's `../sandbox/`) and by
 * package name resolves as it does from source. It runs with the
 * `@spark/source` condition, as tsx does, so what it resolves by package name
 * at run time (`spark run` finding a service's entry) is the source too.
 * Other entries (a test's fixture) run through tsx.
 */
export function nodeEntryArgs(entry: string): string[] {
  const bundle = bundlePath(resolve(entry));
  if (bundle === undefined) return ['--conditions=@spark/source', '--import', 'tsx', entry];
  return ['--conditions=@spark/source', freshBundle(resolve(entry), bundle)];
}

/**
 * What every bundle of a program has, the Debian package's
 * (tools/package/bundle.ts, which adds its own minifying and splitting) and
 * the tests': ESM for node 20 from the workspace's sources.
 *
 * Loaded at run time by name rather than bundled: zeromq's native addon, found
 * through its own `build/manifest.json`; openpgp, which `@spark/keys` requires
 * for its minified CommonJS build; msgpackr-extract, msgpackr's optional
 * native accelerator (not shipped: msgpackr falls back to JavaScript).
 *
 * ESM bundles of CommonJS code (express, ioredis …) call `require` for Node's
 * own modules, and bull-board resolves its UI's directory with
 * `require.resolve`: a `require` of the bundle's own location serves both.
 */
export const PROGRAM_BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  conditions: ['@spark/source'],
  external: ['zeromq', 'openpgp', 'msgpackr-extract'],
  banner: {
    js: "import { createRequire as __sparkCreateRequire } from 'node:module';\nconst require = __sparkCreateRequire(import.meta.url);",
  },
} as const satisfies BuildOptions;

/** `<package>/src/<path>.ts` → `<package>/dist/<path>.bundle.mjs`; undefined for an entry outside a `src/`. */
function bundlePath(entry: string): string | undefined {
  const at = entry.lastIndexOf(`${sep}src${sep}`);
  if (at < 0 || !entry.endsWith('.ts')) return undefined;
  const rest = entry.slice(at + `${sep}src${sep}`.length, -'.ts'.length);
  return join(entry.slice(0, at), 'dist', `${rest}.bundle.mjs`);
}

/** What a bundle was made from: each input file's size and modification time. */
interface Manifest {
  bundle: string;
  inputs: Record<string, [size: number, mtimeMs: number]>;
}

/**
 * The bundle of `entry`, built unless the one on disk was made from the files
 * as they are now. Test files run in parallel and may build the same bundle at
 * once: each writes its own file and renames its manifest into place, so a
 * reader sees one whole bundle or the other.
 */
function freshBundle(entry: string, bundle: string): string {
  const manifestFile = `${bundle}.json`;
  const current = readManifest(manifestFile);
  if (current && upToDate(current)) {
    const built = join(dirname(bundle), current.bundle);
    if (existsSync(built)) return built;
  }

  mkdirSync(dirname(bundle), { recursive: true });
  const name = `${basename(bundle, '.mjs')}-${process.pid}-${Date.now()}.mjs`;
  const result = buildSync({
    entryPoints: [entry],
    outfile: join(dirname(bundle), name),
    ...PROGRAM_BUNDLE_OPTIONS,
    metafile: true,
    logLevel: 'error',
  });
  const root = process.cwd();
  const inputs: Manifest['inputs'] = {};
  for (const input of Object.keys(result.metafile.inputs)) {
    const path = resolve(root, input);
    const stat = statSync(path);
    inputs[path] = [stat.size, stat.mtimeMs];
  }
  const temporary = `${manifestFile}.${process.pid}`;
  writeFileSync(temporary, JSON.stringify({ bundle: name, inputs } satisfies Manifest));
  renameSync(temporary, manifestFile);
  removeStale(dirname(bundle), basename(bundle, '.mjs'), name);
  return join(dirname(bundle), name);
}

function readManifest(file: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

function upToDate(manifest: Manifest): boolean {
  try {
    return Object.entries(manifest.inputs).every(([path, [size, mtimeMs]]) => {
      const stat = statSync(path);
      return stat.size === size && stat.mtimeMs === mtimeMs;
    });
  } catch {
    return false;
  }
}

/** Older builds of the same bundle, left a minute for a process that may still be starting from one. */
function removeStale(dir: string, stem: string, keep: string): void {
  const cutoff = Date.now() - 60_000;
  for (const file of readdirSync(dir)) {
    if (file === keep || !file.startsWith(`${stem}-`) || !file.endsWith('.mjs')) continue;
    const path = join(dir, file);
    try {
      if (statSync(path).mtimeMs < cutoff) rmSync(path, { force: true });
    } catch {
      // Removed by another test file meanwhile.
    }
  }
}
