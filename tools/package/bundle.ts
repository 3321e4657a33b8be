/**
 * The programs of the Debian package: each app's `main.ts` bundled by esbuild
 * into one file with everything it imports (`spark`'s split by command: its
 * entry and a chunk for what each command's `import()` loads), laid out as the
 * workspace lays its packages out (`node_modules/@spark/<app>/dist/main.js` beside a
 * `package.json` with the app's exports), so that what resolves by package
 * name in the checkout — `spark run` finding `@spark/<service>/main`, the
 * builder finding the build helper's `systemd-nspawn`, `--version` reading the
 * nearest `package.json` — resolves the same way in the package. Only the
 * modules esbuild cannot inline are shipped beside the bundles, trimmed to
 * what runs.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { build, type Metafile, type Plugin } from 'esbuild';
import { PROGRAM_BUNDLE_OPTIONS } from '@spark/testing';

/** The apps bundled, and what each is: every one of them an `apps/<name>/src/main.ts`. */
export const APPS = ['cli', 'connector', 'builder', 'signer', 'uploader', 'build-helper'] as const;
export type App = (typeof APPS)[number];

/**
 * The apps whose bundle esbuild splits at their `import()`s: `spark` loads each
 * command's code when that command runs (apps/cli/src/commands.ts), so that
 * `spark run`, a long-lived supervisor, parses and holds its own command's code
 * and what it shares with others, not the dashboard's express and bull-board or
 * the queue library. The services and the build helper import everything they
 * run as they start: one file each.
 */
const SPLIT: ReadonlySet<App> = new Set(['cli']);

/** Where the build helper is installed by the package (the sudoers rule and the builder name this path). */
export const PACKAGED_BUILD_HELPER = '/usr/sbin/spark-build-helper';

/**
 * zod (its classic entry and its core) re-exports its 64 locales as `z.locales`, and configures
 * English: every bundle held all of them (400 KB of source to parse and run at
 * each start). The programs use none but English, so the locales index
 * resolves to English alone; `z.locales.en` stays, the others are absent.
 */
const ZOD_ENGLISH_ONLY: Plugin = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](?:classic|core)$/.test(args.resolveDir)
        ? { path: join(args.resolveDir, '../locales/index.js'), namespace: 'zod-english-only' }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), 'en.js'))};\n`,
      resolveDir: dirname(args.path),
    }));
  },
};

/**
 * Packages a bundled library imports at load time for features no program
 * uses, replaced by a few lines (docs/benchmarks.md, "Idle memory"):
 * - `@opentelemetry/api`: prom-client's process CPU metric asks it for the
 *   active span, and only when exemplars are enabled, which no metric here
 *   enables. Nothing registers a tracer, so the stub answers as the API does
 *   without one: no span.
 * - `cron-parser` (with luxon): bullmq's repeatable jobs and job schedulers.
 *   No queue here repeats a job; should one, the stub throws, saying why.
 */
const UNUSED_PACKAGES: Plugin = {
  name: 'unused-packages',
  setup(build) {
    const stubs: Record<string, string> = {
      '@opentelemetry/api': 'exports.trace = { getSpan: () => undefined };\nexports.context = { active: () => undefined };\n',
      'cron-parser':
        "exports.parseExpression = () => { throw new Error('cron-parser is not in the spark-ts package: its programs schedule no repeatable BullMQ job (tools/package/bundle.ts)'); };\n",
    };
    build.onResolve({ filter: /^(?:@opentelemetry\/api|cron-parser)$/ }, (args) => ({ path: args.path, namespace: 'unused-package' }));
    build.onLoad({ filter: /.*/, namespace: 'unused-package' }, (args) => ({ contents: stubs[args.path] ?? '', loader: 'js' }));
  },
};

/** A package of the workspace's node_modules shipped beside the bundles, and the files of it that run (its license files come along). */
interface ShippedModule {
  name: string;
  files: (dir: string, arch: string) => Promise<string[]>;
  /** A file written instead of copied (zeromq's manifest, cut down to the one addon shipped). */
  rewrite?: { file: string; content: (dir: string, arch: string) => string };
}

/** Node's `process.arch` for a Debian architecture. */
const NODE_ARCH: Record<string, string> = { amd64: 'x64', arm64: 'arm64' };

/**
 * The newest glibc and libstdc++ symbol versions an addon may need: Debian 12's
 * (glibc 2.36, GCC 12's libstdc++), the oldest release the package installs on.
 */
const MAX_GLIBC = [2, 36];
const MAX_GLIBCXX = [3, 4, 30];

/** The zeromq addon the package ships, and the newest glibc symbol version it needs. */
export interface AddonEntry {
  key: string;
  path: string;
  glibc: string;
}

function newestVersion(symbols: string, prefix: string): number[] {
  const versions = [...symbols.matchAll(new RegExp(`\\b${prefix}_([0-9.]+)\\b`, 'g'))].map((match) => match[1]!.split('.').map(Number));
  return versions.reduce((newest, version) => (compareVersions(version, newest) > 0 ? version : newest), [0]);
}

function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The linux/glibc zeromq addon for `arch` that Debian 12 can load (its glibc
 * and libstdc++ symbol versions, read with objdump, no newer than Debian 12's),
 * of those the one with the highest Node ABI, as zeromq's loader prefers.
 * The addons are N-API: one built with a later Node runs on Node 20.
 */
export function zeromqAddon(dir: string, arch: string): AddonEntry {
  const manifest = JSON.parse(readFileSync(join(dir, 'build/manifest.json'), 'utf8')) as Record<string, string>;
  const nodeArch = NODE_ARCH[arch];
  const loadable = Object.entries(manifest)
    .map(([key, path]) => ({
      key,
      path,
      config: JSON.parse(key) as { os: string; arch: string; libc: string; runtime: string; abi: number },
    }))
    .filter(({ config }) => config.os === 'linux' && config.arch === nodeArch && config.libc === 'glibc' && config.runtime === 'node')
    .map((entry) => {
      const symbols = execFileSync('objdump', ['-T', join(dir, 'build', entry.path)], { encoding: 'utf8', maxBuffer: 64 << 20 });
      return { ...entry, glibc: newestVersion(symbols, 'GLIBC'), glibcxx: newestVersion(symbols, 'GLIBCXX') };
    })
    .filter(({ glibc, glibcxx }) => compareVersions(glibc, MAX_GLIBC) <= 0 && compareVersions(glibcxx, MAX_GLIBCXX) <= 0)
    .sort((a, b) => b.config.abi - a.config.abi);
  const best = loadable[0];
  if (!best) {
    throw new Error(
      `node_modules/zeromq has no linux/glibc addon for ${arch} that Debian 12 can load (glibc ≤ ${MAX_GLIBC.join('.')}, GLIBCXX ≤ ${MAX_GLIBCXX.join('.')})`,
    );
  }
  return { key: best.key, path: best.path, glibc: best.glibc.join('.') };
}

async function jsFiles(dir: string, sub: string): Promise<string[]> {
  return (await readdir(join(dir, sub))).filter((name) => name.endsWith('.js')).map((name) => join(sub, name));
}

async function allFiles(dir: string, sub: string): Promise<string[]> {
  const entries = await readdir(join(dir, sub), { withFileTypes: true, recursive: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

const SHIPPED: readonly ShippedModule[] = [
  {
    name: 'zeromq',
    files: async (dir, arch) => [
      'package.json',
      ...(await jsFiles(dir, 'lib')),
      'build/manifest.json',
      join('build', zeromqAddon(dir, arch).path),
    ],
    rewrite: {
      file: 'build/manifest.json',
      content: (dir, arch) => {
        const { key, path } = zeromqAddon(dir, arch);
        return `${JSON.stringify({ [key]: path })}\n`;
      },
    },
  },
  // zeromq's addon loader (the rest of cmake-ts builds addons from source).
  { name: 'cmake-ts', files: () => Promise.resolve(['package.json', 'build/loader.js']) },
  { name: 'openpgp', files: () => Promise.resolve(['package.json', 'dist/node/openpgp.min.cjs']) },
  // The dashboard's pages and scripts, which bull-board serves from its directory.
  { name: '@bull-board/ui', files: async (dir) => ['package.json', ...(await allFiles(dir, 'dist'))] },
];

/** A bundled or shipped npm package, for the copyright file. */
export interface ThirdParty {
  name: string;
  version: string;
  license: string;
  /** Its license file, when it has one. */
  licenseText: string | null;
}

/** What {@link bundlePrograms} made. */
export interface Bundles {
  /** Every npm package whose code is in a bundle or shipped beside them. */
  thirdParty: ThirdParty[];
  /** The source files bundled into each app's bundle (paths relative to the repository, from esbuild's metafile). */
  modules: Record<App, string[]>;
  /** The files each app's bundle is made of: `dist/main.js`, and for a split bundle its chunks (esbuild's metafile). */
  outputs: Record<App, BundleOutput[]>;
}

/** One file of a bundle, from esbuild's metafile. */
export interface BundleOutput {
  /** Relative to the app's package directory: `dist/main.js`, `dist/chunks/<name>-<hash>.js`. */
  file: string;
  /** The bundle's files it imports as it loads (`import` statements), by `file`. */
  imports: string[];
  /** The bundle's files it loads when its code calls `import()`, by `file`. */
  dynamicImports: string[];
  /** The source files whose code it holds (relative to the repository). */
  inputs: string[];
}

function outputsOf(metafile: Metafile, root: string, out: string): BundleOutput[] {
  // The metafile names outputs relative to absWorkingDir (the repository).
  const local = (path: string) => relative(out, join(root, path));
  return Object.entries(metafile.outputs).map(([path, output]) => ({
    file: local(path),
    imports: output.imports.filter((i) => !i.external && i.kind === 'import-statement').map((i) => local(i.path)),
    dynamicImports: output.imports.filter((i) => !i.external && i.kind === 'dynamic-import').map((i) => local(i.path)),
    inputs: Object.keys(output.inputs),
  }));
}

async function appPackageJson(root: string, app: App): Promise<string> {
  const pkg = JSON.parse(await readFile(join(root, 'apps', app, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    description?: string;
    exports?: Record<string, string | Record<string, string>>;
  };
  // The exports as the built package has them: without the source condition, only what exists here.
  const exports: Record<string, string> = {};
  for (const [key, target] of Object.entries(pkg.exports ?? {})) {
    if (typeof target === 'string') exports[key] = target;
    else if (key === './main' && target.default) exports[key] = target.default;
  }
  return `${JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, private: true, type: 'module', exports }, null, 2)}\n`;
}

/** The npm package a bundled input file belongs to (`node_modules/<name>/…`), or null for the workspace's own. */
function packageOf(input: string): string | null {
  const at = input.lastIndexOf('node_modules/');
  if (at === -1) return null;
  const name = /^(?:@[^/]+\/)?[^/]+/.exec(input.slice(at + 'node_modules/'.length))?.[0] ?? null;
  return name?.startsWith('@spark/') ? null : name;
}

/**
 * A license text, or where Debian keeps it when it is one of the common
 * licenses in /usr/share/common-licenses (Debian Policy 12.5: referred to, not copied).
 */
function commonLicense(text: string): string {
  if (/Apache License\s+Version 2\.0, January 2004/.test(text) && /END OF TERMS AND CONDITIONS/.test(text)) {
    return 'The Apache License, Version 2.0: on Debian systems, its text is in /usr/share/common-licenses/Apache-2.0.';
  }
  if (/GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3/.test(text)) {
    return 'The GNU Lesser General Public License, version 3: on Debian systems, its text is in /usr/share/common-licenses/LGPL-3.';
  }
  if (/Mozilla Public License Version 2\.0/.test(text)) {
    return 'The Mozilla Public License, version 2.0: on Debian systems, its text is in /usr/share/common-licenses/MPL-2.0.';
  }
  return text;
}

/** The license files at the top of a package's directory. */
async function licenseFilesOf(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((file) => /^(licen[cs]e|copying)/i.test(file)).sort();
}

async function describe(root: string, name: string): Promise<ThirdParty> {
  const dir = join(root, 'node_modules', name);
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { version: string; license?: string };
  const licenseFiles = await licenseFilesOf(dir);
  const texts = await Promise.all(licenseFiles.map(async (file) => commonLicense(await readFile(join(dir, file), 'utf8'))));
  return {
    name,
    version: pkg.version,
    license: pkg.license ?? 'see its license text',
    licenseText: texts.length > 0 ? texts.join('\n') : null,
  };
}

/**
 * Bundles every app into `<libDir>/node_modules/@spark/<app>/dist/main.js`
 * (`spark`'s with its commands' chunks in `dist/chunks/`; with its
 * `package.json`; the build helper also gets its `sandbox/`), and
 * copies the modules loaded by name (zeromq with the one addon for `arch`,
 * its loader, openpgp, bull-board's UI) into `<libDir>/node_modules`.
 */
export async function bundlePrograms(root: string, libDir: string, arch: string): Promise<Bundles> {
  const used = new Set<string>();
  const modules = {} as Record<App, string[]>;
  const outputs = {} as Record<App, BundleOutput[]>;
  for (const app of APPS) {
    const out = join(libDir, 'node_modules/@spark', app);
    const result = await build({
      entryPoints: [join(root, 'apps', app, 'src/main.ts')],
      // The entry stays `dist/main.js`; what it imports with `import()` goes, split by esbuild, into `dist/chunks/`.
      outdir: join(out, 'dist'),
      entryNames: '[name]',
      chunkNames: 'chunks/[name]-[hash]',
      splitting: SPLIT.has(app),
      ...PROGRAM_BUNDLE_OPTIONS,
      define: { SPARK_PACKAGED_BUILD_HELPER: JSON.stringify(PACKAGED_BUILD_HELPER) },
      // Folds what `define` decided (the checkout's build helper path is dead code here) and drops it.
      minifySyntax: true,
      // V8 keeps a script's source for compiling its functions lazily, two bytes a character if one of them is
      // beyond Latin-1: comments (which minifyWhitespace drops) and strings or regular expressions (which the
      // ascii charset escapes) held some, so each bundle's whole source took twice its size in memory.
      // Names stay unminified, for readable stack traces.
      minifyWhitespace: true,
      charset: 'ascii',
      absWorkingDir: root,
      legalComments: 'none',
      metafile: true,
      logLevel: 'warning',
      plugins: [ZOD_ENGLISH_ONLY, UNUSED_PACKAGES],
    });
    modules[app] = Object.keys(result.metafile.inputs);
    outputs[app] = outputsOf(result.metafile, root, out);
    for (const input of modules[app]) {
      const name = packageOf(input);
      if (name) used.add(name);
    }
    await writeFile(join(out, 'package.json'), await appPackageJson(root, app));
    if (app === 'build-helper') await cp(join(root, 'apps/build-helper/sandbox'), join(out, 'sandbox'), { recursive: true });
  }
  for (const module of SHIPPED) {
    const from = join(root, 'node_modules', module.name);
    const to = join(libDir, 'node_modules', module.name);
    for (const file of [...(await module.files(from, arch)), ...(await licenseFilesOf(from))]) {
      await mkdir(dirname(join(to, file)), { recursive: true });
      if (module.rewrite?.file === file) await writeFile(join(to, file), module.rewrite.content(from, arch));
      else await copyFile(join(from, file), join(to, file));
      // Native code ships stripped of its debugging symbols, as Debian's packages do.
      if (file.endsWith('.node'))
        execFileSync('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', join(to, file)]);
    }
    used.add(module.name);
  }
  const thirdParty = await Promise.all([...used].sort().map((name) => describe(root, name)));
  return { thirdParty, modules, outputs };
}
