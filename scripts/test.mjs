#!/usr/bin/env node
// `npm test`: the workspace checks, then every project's tests through Nx; then add up node's TAP
// results of all projects and end with node's own closing lines and one plain "N passed, N failed"
// line.
//
// The checks are whole-workspace runs, one program each (the root tsconfig.json holds every
// project's files): formatting and lint (`npm run lint`) alongside the typecheck and the build of
// every project (`npm run typecheck`, `nx run-many -t build`), two chains on the two cores.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const resultsDir = join(root, '.test-results');
rmSync(resultsDir, { recursive: true, force: true });

const env = { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', NX_NO_CLOUD: 'true' };
const run = (command, args) =>
  new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit', env });
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
const tests = checked ? spawnSync(...nx(['test'], ['--parallel=1']), { cwd: root, stdio: 'inherit', env }).status : 1;

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
console.log(`${totals.pass} passed, ${totals.fail + totals.cancelled + (checked ? 0 : 1)} failed`);
process.exit(failed ? 1 : 0);
