#!/usr/bin/env node
// Runs one project's tests with node's own test runner: every test/**/*.test.ts
// file of the current directory, TypeScript loaded through tsx, workspace libs
// resolved to their sources (the "@spark/source" export condition).
// Node 20's --test does not expand globs, so the files are listed here.
// Besides the spec output, a TAP copy goes to <root>/.test-results/<project>.tap
// for scripts/test.mjs to add up.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

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
const args = [
  '--conditions=@spark/source',
  '--import',
  'tsx',
  '--test',
  `--test-concurrency=${concurrency}`,
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${join(resultsDir, `${basename(project)}.tap`)}`,
  ...files.map((file) => relative(process.cwd(), file)),
];
// The tests run in the environment the units give the services, without NODE_EXTRA_CA_CERTS: set on
// some machines, it makes every node process parse that CA bundle as it starts (60 ms of CPU and
// 2 MiB each, docs/benchmarks.md), and the tests start several hundred. The tests of TLS name their
// own certificates.
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const { status, signal } = spawnSync(process.execPath, args, { stdio: 'inherit', env });
process.exit(status ?? (signal ? 1 : 0));
