import { parseArgs } from 'node:util';
import { emptyResult, seededRandom, type Scenario, type ScenarioResult } from './harness.js';
import { hungPipeScenario, logFloodScenario } from './scenarios/build-limits.js';
import { debspawnScenario } from './scenarios/debspawn-build.js';
import { diskFullScenario } from './scenarios/disk-full.js';
import { hostileInputScenario } from './scenarios/hostile-input.js';
import { killScenario } from './scenarios/kill-services.js';
import { lifecycleScenario } from './scenarios/lifecycle.js';
import { lighthouseOutageScenario } from './scenarios/lighthouse-outage.js';
import { receiverFailuresScenario, receiverPartialFileScenario } from './scenarios/receiver-failures.js';
import { redisRestartScenario } from './scenarios/redis-restart.js';

/*
 * `npm run test:chaos`: every fault-injection scenario (scenarios/) against
 * the real chain, one after another, then a table. Exit 1 if any failed.
 * `--seed N` replays a run; `--only NAME[,NAME]` runs some scenarios.
 */
const { values } = parseArgs({ options: { seed: { type: 'string' }, only: { type: 'string' } }, strict: true });
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
if (!Number.isInteger(seed)) {
  process.stderr.write(`--seed must be an integer, got ${values.seed ?? ''}\n`);
  process.exit(64);
}
const scenarios: Scenario[] = [
  killScenario,
  lighthouseOutageScenario,
  redisRestartScenario,
  receiverFailuresScenario,
  receiverPartialFileScenario,
  diskFullScenario,
  hostileInputScenario,
  lifecycleScenario,
  hungPipeScenario,
  logFloodScenario,
  debspawnScenario,
];
const only = values.only?.split(',');
const selected = only ? scenarios.filter((scenario) => only.includes(scenario.name)) : scenarios;
if (selected.length === 0) {
  process.stderr.write(`--only names none of: ${scenarios.map((scenario) => scenario.name).join(', ')}\n`);
  process.exit(64);
}

const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
say(`chaos: seed ${seed} (replay with: npm run test:chaos -- --seed ${seed})`);
const started = Date.now();
const rows: { name: string; result: ScenarioResult; seconds: number }[] = [];
for (const [index, scenario] of selected.entries()) {
  const random = seededRandom(seed + index * 7919);
  const t0 = Date.now();
  say(`── ${scenario.name} (timeout ${scenario.timeoutMs / 1000} s)`);
  let result: ScenarioResult;
  let timer: NodeJS.Timeout | undefined;
  try {
    result = await Promise.race([
      scenario.run(random, (line) => say(`   ${scenario.name}: ${line}`)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario timed out after ${scenario.timeoutMs / 1000} s`)), scenario.timeoutMs);
      }),
    ]);
  } catch (error) {
    result = emptyResult();
    result.problems.push((error as Error).message);
  } finally {
    clearTimeout(timer);
  }
  const seconds = (Date.now() - t0) / 1000;
  rows.push({ name: scenario.name, result, seconds });
  for (const note of result.notes) say(`   ${scenario.name}: ${note}`);
  for (const problem of result.problems) say(`   ${scenario.name}: PROBLEM ${problem}`);
  say(`   ${scenario.name}: ${result.problems.length === 0 ? 'passed' : 'FAILED'} in ${seconds.toFixed(1)} s`);
}

const header = ['scenario', 'jobs', 'files', 'duplicates', 'lost', 'seconds', 'result'];
const table = rows.map(({ name, result, seconds }) => [
  name,
  String(result.jobs),
  String(result.files),
  String(result.duplicates),
  String(result.lost),
  seconds.toFixed(1),
  result.problems.length === 0 ? 'pass' : `FAIL (${result.problems.length})`,
]);
const widths = header.map((title, column) => Math.max(title.length, ...table.map((row) => (row[column] ?? '').length)));
const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ');
process.stdout.write(`\n${line(header)}\n${line(widths.map((width) => '-'.repeat(width)))}\n${table.map(line).join('\n')}\n`);
const failed = rows.filter((row) => row.result.problems.length > 0);
process.stdout.write(
  `\nchaos: seed ${seed}, ${rows.length} scenarios, ${((Date.now() - started) / 1000).toFixed(0)} s: ${failed.length === 0 ? 'all passed' : `FAILED: ${failed.map((row) => row.name).join(', ')}`}\n`,
);
// Leftover handles (a socket of a killed chain) must not keep the suite alive.
process.exit(failed.length === 0 ? 0 : 1);
