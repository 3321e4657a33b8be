/*
 * The services run with SERVICE_NODE_FLAGS (libs/config/src/node-flags.ts)
 * wherever they are started: by `spark run`'s supervisor, and through the
 * launchers deploy/install.sh writes for the systemd units.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SERVICE_NODE_FLAGS } from '@spark/config';
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
      assert.deepEqual(spec.args.slice(0, SERVICE_NODE_FLAGS.length), [...SERVICE_NODE_FLAGS], spec.name);
      assert.ok(spec.args.includes('--config'), spec.name);
    }
  });

  it("install.sh writes the services' launchers with them, and the spark command's without", async () => {
    const script = await readFile(installSh, 'utf8');
    // install.sh's own launcher function and flags, run as they are (install(1) without the root ownership).
    const launcher = /^launcher\(\) \{\n[\s\S]*?\n\}\n/m.exec(script)?.[0];
    const flags = /^service_node_flags=\(.*\)$/m.exec(script)?.[0];
    assert.ok(launcher, 'no launcher() in install.sh');
    assert.ok(flags, 'no service_node_flags= in install.sh');
    const shell = [
      'set -eu',
      'install() { command install -m 0755 "${@: -2:1}" "${@: -1}"; }',
      `node=${JSON.stringify(process.execPath)}`,
      launcher,
      flags,
      `for service in ${SERVICES.join(' ')}; do launcher "${dir}/spark-$service" "/opt/spark-ts/apps/$service/dist/main.js" "\${service_node_flags[@]}"; done`,
      `launcher "${dir}/spark" /opt/spark-ts/apps/cli/dist/main.js`,
    ].join('\n');
    await run('bash', ['-c', shell]);
    for (const service of SERVICES) {
      const text = await readFile(join(dir, `spark-${service}`), 'utf8');
      assert.equal(
        text,
        `#!/bin/sh\nexec ${process.execPath} ${SERVICE_NODE_FLAGS.join(' ')} /opt/spark-ts/apps/${service}/dist/main.js "$@"\n`,
      );
    }
    assert.equal(
      await readFile(join(dir, 'spark'), 'utf8'),
      `#!/bin/sh\nexec ${process.execPath} /opt/spark-ts/apps/cli/dist/main.js "$@"\n`,
    );
  });
});
