/*
 * Each service, and `spark run`'s supervisor, loads only the packages it
 * uses (docs/benchmarks.md, "Idle memory"): the processes run as the
 * supervisor starts them, with a module hook that records every module
 * loaded, ESM and CommonJS, until the process is up.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { serviceCommands } from '@spark/cli';
import { startChain, type Chain, type ServiceName } from '../src/chain/chain.js';

/** Writes the hook: `--import <register.mjs>` appends each module a process loads to `<dir>/<pid>.txt`. */
async function writeHook(dir: string): Promise<string> {
  await writeFile(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function load(url, context, next) {
  appendFileSync(out, url + '\\n');
  return next(url, context);
}
`,
  );
  const register = join(dir, 'register.mjs');
  await writeFile(
    register,
    `import { register, default as Module } from 'node:module';
import { appendFileSync } from 'node:fs';
const out = ${JSON.stringify(dir)} + '/' + process.pid + '.txt';
register('./hooks.mjs', import.meta.url, { data: { out } });
const load = Module._load;
Module._load = function (request, parent, isMain) {
  try { appendFileSync(out, Module._resolveFilename(request, parent, isMain) + '\\n'); } catch {}
  return load.apply(this, arguments);
};
`,
  );
  return register;
}

/** The npm packages among the loaded modules (`bullmq`, `@bull-board/api`, …). */
function packagesOf(list: string): Set<string> {
  const names = new Set<string>();
  for (const line of list.split('\n')) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line);
    if (match?.[1]) names.add(match[1]);
  }
  return names;
}

/** Runs `args` with the hook until `up` matches its output, then stops it; the packages it loaded. */
async function loadedPackages(dir: string, register: string, command: string, args: string[], up: RegExp): Promise<Set<string>> {
  const child = spawn(command, ['--import', pathToFileURL(register).href, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SPARK_LOG_LEVEL: 'info' },
  });
  let output = '';
  const exited = once(child, 'exit');
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not up within 60 s:\n${output}`)), 60_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (up.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before it was up:\n${output}`));
      });
    });
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  return packagesOf(await readFile(join(dir, `${child.pid}.txt`), 'utf8'));
}

/** Packages only one service (or the dashboard) may load. */
const OWNED: Record<string, ServiceName | 'dashboard'> = {
  zeromq: 'connector',
  openpgp: 'signer',
  express: 'dashboard',
  '@bull-board/api': 'dashboard',
  '@bull-board/express': 'dashboard',
};
const STARTED: Record<ServiceName, RegExp> = {
  connector: /connector started/,
  builder: /builder started/,
  signer: /taking sign jobs/,
  uploader: /uploader started/,
};

describe('loaded modules', () => {
  let chain: Chain;
  let dir: string;
  let register: string;
  before(async () => {
    chain = await startChain({ runner: 'noop', pollInterval: 5, metricsPorts: { connector: 0, builder: 0, signer: 0, uploader: 0 } });
    dir = await mkdtemp(join(tmpdir(), 'spark-modules-'));
    register = await writeHook(dir);
  });
  after(async () => {
    await chain.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const spec of ['connector', 'builder', 'signer', 'uploader'] as const) {
    it(`${spec} loads none of the other services' or the dashboard's packages`, async () => {
      const [command] = serviceCommands(chain.configFile, [spec]);
      assert.ok(command);
      const loaded = await loadedPackages(dir, register, command.command, command.args, STARTED[spec]);
      assert.ok(loaded.has('bullmq'), `the record is incomplete: ${[...loaded].join(' ')}`);
      for (const [name, owner] of Object.entries(OWNED)) {
        if (owner === spec) assert.ok(loaded.has(name), `${spec} should load ${name} (it is its own)`);
        else assert.ok(!loaded.has(name), `${spec} loads ${name}, which only the ${owner} needs`);
      }
    });
  }

  it("spark run's supervisor loads no queue, Redis, metrics, logging or schema code", async () => {
    const spark = fileURLToPath(import.meta.resolve('@spark/cli/main'));
    const loader = spark.endsWith('.ts') ? ['--conditions=@spark/source', '--import', 'tsx'] : [];
    const loaded = await loadedPackages(
      dir,
      register,
      process.execPath,
      [...loader, spark, 'run', '--config', chain.configFile],
      /connector started/,
    );
    assert.ok(loaded.has('smol-toml'), `the record is incomplete: ${[...loaded].join(' ')}`);
    for (const name of ['bullmq', 'ioredis', 'prom-client', 'pino', 'zod', 'zeromq', 'openpgp', 'express', '@bull-board/api']) {
      assert.ok(!loaded.has(name), `the supervisor loads ${name}`);
    }
  });
});
