#!/usr/bin/env node
// `npm test`: the workspace checks, then every project's tests; then add up node's TAP results of
// all projects and end with node's own closing lines and one plain "N passed, N failed" line.
//
// The checks are whole-workspace runs, one program each (the root tsconfig.json holds every
// project's files): formatting and lint (`npm run lint`) alongside the typecheck and the build of
// every project (`npm run typecheck`, `nx run-many -t build`), two chains on the two cores.
//
// The tests: each project's own `npm test` (scripts/run-node-tests.mjs, three files at once), two
// projects at a time, the longest first (SLOWEST_FIRST), each output line prefixed with the project's
// name. The tests mostly wait on processes, sockets and debspawn; two projects keep both cores busy,
// and starting the longest first keeps one long project from running alone at the end.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const resultsDir = join(root, '.test-results');
rmSync(resultsDir, { recursive: true, force: true });

const env = { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', NX_NO_CLOUD: 'true' };
const run = (command, args, cwd = root, prefix = '') =>
  new Promise((resolve) => {
    const child = spawn(command, args, { cwd, stdio: prefix ? ['ignore', 'pipe', 'pipe'] : 'inherit', env });
    if (prefix) {
      for (const [stream, out] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => out.write(`${prefix}${line}\n`));
      }
    }
    child.on('error', (error) => {
      console.error(`${command}: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
const chain = async (...steps) => {
  for (const [command, args] of steps) {
    const code = await run(command, args);
    if (code !== 0) return code;
  }
  return 0;
};
const nx = (targets, extra = []) => ['npx', ['nx', 'run-many', '-t', ...targets, '--outputStyle=stream', ...extra]];

const checks = await Promise.all([
  chain(['npx', ['prettier', '--check', '.']], ['npx', ['eslint', '.']]),
  chain(['npx', ['tsc', '-p', 'tsconfig.json']], nx(['build'])),
]);
const checked = checks.every((code) => code === 0);

/**
 * The projects whose tests take longest, longest first, as measured one project at a time (tools
 * 100 s, the builder 80 s with its real debspawn builds, the connector 63 s, then 37 s down to 16 s);
 * the others, each under 10 s, follow in name order. An order only: a project missing here still runs.
 */
const SLOWEST_FIRST = ['tools', 'builder', 'connector', 'signer', 'service', 'uploader', 'cli', 'build-helper'];
const workspaces = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces.flatMap((pattern) =>
  pattern.endsWith('/*')
    ? readdirSync(join(root, pattern.slice(0, -2)), { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => join(pattern.slice(0, -2), entry.name))
    : [pattern],
);
const rank = (dir) => {
  const at = SLOWEST_FIRST.indexOf(basename(dir));
  return at < 0 ? SLOWEST_FIRST.length : at;
};
const projects = workspaces
  .filter((dir) => existsSync(join(root, dir, 'package.json')))
  .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) }))
  .filter(({ pkg }) => pkg.scripts?.test)
  .sort((a, b) => rank(a.dir) - rank(b.dir) || a.dir.localeCompare(b.dir));
const failedProjects = [];
const worker = async () => {
  for (let next = projects.shift(); next; next = projects.shift()) {
    const code = await run('npm', ['run', '--silent', 'test'], join(root, next.dir), `${next.pkg.name}: `);
    if (code !== 0) failedProjects.push(next.pkg.name);
  }
};
if (checked) await Promise.all([worker(), worker()]);
const tests = checked && failedProjects.length === 0 ? 0 : 1;

const totals = { tests: 0, pass: 0, fail: 0, skipped: 0, todo: 0, cancelled: 0 };
const files = existsSync(resultsDir) ? readdirSync(resultsDir).filter((f) => f.endsWith('.tap')) : [];
for (const file of files) {
  for (const line of readFileSync(join(resultsDir, file), 'utf8').split('\n')) {
    const match = /^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$/.exec(line);
    if (match) totals[match[1]] += Number(match[2]);
  }
}
const failed = !checked || tests !== 0 || totals.fail > 0 || totals.cancelled > 0;
console.log(`\nℹ projects ${files.length}`);
for (const key of Object.keys(totals)) console.log(`ℹ ${key} ${totals[key]}`);
if (!checked) console.log('✖ formatting, lint, typecheck or build failed (see above); tests were not run');
if (failedProjects.length > 0) console.log(`✖ tests failed in ${failedProjects.join(', ')}`);
console.log(`${totals.pass} passed, ${totals.fail + totals.cancelled + (checked ? 0 : 1)} failed`);
process.exit(failed ? 1 : 0);
