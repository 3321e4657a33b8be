#!/usr/bin/env node
// Runs one project's tests with node's own test runner: every test/**/*.test.ts file of the current
// directory, each bundled by esbuild with the workspace modules it imports (resolved to their
// sources, the "@spark/source" export condition) and the npm packages left for node to load.
// Node 20's --test does not expand globs, so the files are listed here.
// Besides the spec output, a TAP copy goes to <root>/.test-results/<project>.tap
// for scripts/test.mjs to add up.
//
// Why bundles and not tsx's loader: through tsx, every module a test file loads, its npm packages'
// too, crosses tsx's loader thread; the connector's 11 test files took 74 s of CPU that way and 47 s
// from bundles (docs/testing.md). Each module keeps its own import.meta.url (set at bundling), so
// what a test or a helper finds beside its source file it finds as before; stack traces point at
// the sources (--enable-source-maps).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, transform } from 'esbuild';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const project = JSON.parse(readFileSync('package.json', 'utf8')).name.replace(/^@spark\//, '');

function testFiles(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return testFiles(path);
      return entry.name.endsWith('.test.ts') ? [path] : [];
    })
    .sort();
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : testFiles('test');
if (files.length === 0) {
  console.error(`${project}: no test files under test/`);
  process.exit(1);
}
const resultsDir = join(root, '.test-results');
mkdirSync(resultsDir, { recursive: true });
// Test files mostly wait (on Redis, sockets, child processes, debspawn), each with its own
// redis-server, ports and directories, so several run at once. Node's default is one fewer than
// the CPUs: one file at a time on a two-core machine. SPARK_TEST_CONCURRENCY=1 runs them in turn.
const concurrency = Number(process.env.SPARK_TEST_CONCURRENCY ?? 3);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  console.error(`SPARK_TEST_CONCURRENCY=${process.env.SPARK_TEST_CONCURRENCY}: not a whole number of test files at once (≥ 1)`);
  process.exit(2);
}

// The bundles of this run, removed when it ends (two runs of one project do not share them).
const bundleDir = join(root, 'node_modules', '.cache', 'spark-test-bundles', `${basename(project)}-${process.pid}`);
const moduleUrls = {
  name: 'module-urls',
  setup(build) {
    // npm packages (and node's own modules) load as node loads them; workspace packages are bundled.
    build.onResolve({ filter: /^[^./]/ }, (args) =>
      args.kind === 'entry-point' || args.path.startsWith('@spark/') ? undefined : { path: args.path, external: true },
    );
    // Each TypeScript module's import.meta.url stays its own file's, not the bundle's.
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      const { code } = await transform(await readFile(args.path, 'utf8'), {
        loader: 'ts',
        format: 'esm',
        target: 'node20',
        define: { 'import.meta.url': JSON.stringify(pathToFileURL(args.path).href) },
        sourcefile: args.path,
        sourcemap: 'inline',
      });
      return { contents: code, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};
try {
  await build({
    entryPoints: files.map((file) => resolve(file)),
    outdir: bundleDir,
    outbase: process.cwd(),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@spark/source'],
    sourcemap: true,
    plugins: [moduleUrls],
    logLevel: 'error',
  });
} catch {
  // esbuild has printed what it could not bundle, with the file and line.
  rmSync(bundleDir, { recursive: true, force: true });
  process.exit(1);
}
const bundled = (file) => join(bundleDir, relative(process.cwd(), resolve(file))).replace(/\.ts$/, '.mjs');

const args = [
  '--conditions=@spark/source',
  '--enable-source-maps',
  '--test',
  `--test-concurrency=${concurrency}`,
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${join(resultsDir, `${basename(project)}.tap`)}`,
  ...files.map(bundled),
];
// The tests run in the environment the units give the services, without NODE_EXTRA_CA_CERTS: set on
// some machines, it makes every node process parse that CA bundle as it starts (60 ms of CPU and
// 2 MiB each, docs/benchmarks.md), and the tests start several hundred. The tests of TLS name their
// own certificates.
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const { status, signal } = spawnSync(process.execPath, args, { stdio: 'inherit', env });
rmSync(bundleDir, { recursive: true, force: true });
process.exit(status ?? (signal ? 1 : 0));
