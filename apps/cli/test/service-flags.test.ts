/*
 * Each service runs with its flags (nodeFlags, libs/config/src/node-flags.ts)
 * wherever it is started: by `spark run`'s supervisor here, and through the
 * package's launchers for the systemd units (tools/test/package.test.ts
 * checks those, and the `spark` command's, which carries its own).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeFlags } from '@spark/config';
import { serviceCommands, type SERVICES } from '@spark/cli';

describe('service node flags', () => {
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
});
