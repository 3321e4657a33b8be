#!/usr/bin/env node
// `npm test`: check formatting (prettier), lint, typecheck and build every project, then run every
// project's tests, all through Nx; then add up node's TAP results of all
// projects and end with node's own closing lines and one plain
// "N passed, N failed" line.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const resultsDir = join(root, '.test-results');
rmSync(resultsDir, { recursive: true, force: true });

const env = { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', NX_NO_CLOUD: 'true' };
const nx = (targets, extra = []) =>
  spawnSync('npx', ['nx', 'run-many', '-t', ...targets, '--outputStyle=stream', ...extra], {
    cwd: root,
    stdio: 'inherit',
    env,
  }).status;

const formatted = spawnSync('npx', ['prettier', '--check', '.'], { cwd: root, stdio: 'inherit', env }).status;
const checks = formatted === 0 ? nx(['lint', 'typecheck', 'build']) : 1;
const tests = checks === 0 ? nx(['test'], ['--parallel=1']) : 1;

const totals = { tests: 0, pass: 0, fail: 0, skipped: 0, todo: 0, cancelled: 0 };
const files = existsSync(resultsDir) ? readdirSync(resultsDir).filter((f) => f.endsWith('.tap')) : [];
for (const file of files) {
  for (const line of readFileSync(join(resultsDir, file), 'utf8').split('\n')) {
    const match = /^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$/.exec(line);
    if (match) totals[match[1]] += Number(match[2]);
  }
}
const failed = checks !== 0 || tests !== 0 || totals.fail > 0 || totals.cancelled > 0;
console.log(`\nℹ projects ${files.length}`);
for (const key of Object.keys(totals)) console.log(`ℹ ${key} ${totals[key]}`);
if (checks !== 0) console.log('✖ lint, typecheck or build failed (see above); tests were not run');
console.log(`${totals.pass} passed, ${totals.fail + totals.cancelled + (checks !== 0 ? 1 : 0)} failed`);
process.exit(failed ? 1 : 0);
