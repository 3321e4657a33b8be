/*
 * Each service runs with its flags (nodeFlags, libs/config/src/node-flags.ts)
 * wherever it is started: by `spark run`'s supervisor, and through the
 * launchers deploy/install.sh writes for the systemd units; the `spark`
 * command's launcher carries its own, for the supervisor itself.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nodeFlags, type NodeProgram } from '@spark/config';
import { SERVICES, serviceCommands } from '@spark/cli';

const run = promisify(execFile);
const installSh = fileURLToPath(new URL('../../../deploy/install.sh', import.meta.url));

describe('service node flags', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-flags-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('spark run starts every service with them', () => {
    for (const spec of serviceCommands('/etc/laniakea/spark.toml')) {
      const flags = nodeFlags(spec.name as (typeof SERVICES)[number]);
      assert.deepEqual(spec.args.slice(0, flags.length), [...flags], spec.name);
      assert.ok(spec.args.includes('--config'), spec.name);
    }
  });

  it('runs a service whose entry is TypeScript source through tsx, or as sourceEntryArgs says, after its flags', () => {
    const [viaTsx] = serviceCommands('/etc/laniakea/spark.toml', ['signer']);
    const flags = nodeFlags('signer');
    assert.ok(viaTsx);
    const entry = viaTsx.args.at(-3);
    assert.match(entry ?? '', /apps\/signer\/src\/main\.ts$/, 'these tests run from source');
    assert.deepEqual(viaTsx.args, [
      ...flags,
      '--conditions=@spark/source',
      '--import',
      'tsx',
      entry,
      '--config',
      '/etc/laniakea/spark.toml',
    ]);
    const [asked] = serviceCommands('/etc/laniakea/spark.toml', ['signer'], {
      sourceEntryArgs: (source) => ['--bundled', `${source}.mjs`],
    });
    assert.deepEqual(asked?.args, [...flags, '--bundled', `${entry}.mjs`, '--config', '/etc/laniakea/spark.toml']);
  });

  it("install.sh writes the services' launchers and the spark command's with them", async () => {
    const script = await readFile(installSh, 'utf8');
    // install.sh's own lines, run as they are (install(1) without the root ownership).
    const launcher = /^launcher\(\) \{\n[\s\S]*?\n\}\n/m.exec(script)?.[0];
    const lines = [
      /^node_flags\(\) \{\n[\s\S]*?\n\}$/m,
      /^launcher "\$bindir\/spark" .*$/m,
      /^for service in "\$\{services\[@\]\}"; do launcher .*$/m,
    ].map((pattern) => pattern.exec(script)?.[0] ?? assert.fail(`no line ${pattern} in install.sh`));
    assert.ok(launcher, 'no launcher() in install.sh');
    const shell = [
      'set -eu',
      'install() { command install -m 0755 "${@: -2:1}" "${@: -1}"; }',
      `node=${JSON.stringify(process.execPath)} root=/opt/spark-ts bindir=${JSON.stringify(dir)}`,
      `services=(${SERVICES.join(' ')})`,
      launcher,
      ...lines,
    ].join('\n');
    await run('bash', ['-c', shell]);
    const programs: [string, NodeProgram][] = [
      ['spark', 'cli'],
      ...SERVICES.map((service): [string, NodeProgram] => [`spark-${service}`, service]),
    ];
    for (const [file, app] of programs) {
      assert.equal(
        await readFile(join(dir, file), 'utf8'),
        `#!/bin/sh\nexec ${process.execPath} ${nodeFlags(app).join(' ')} /opt/spark-ts/apps/${app}/dist/main.js "$@"\n`,
        file,
      );
    }
  });
});
