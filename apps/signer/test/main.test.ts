import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runTsEntry } from '@spark/testing';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const seed = fileURLToPath(new URL('../../../libs/config/test/fixtures/seed-spark.toml', import.meta.url));

describe('spark-signer', () => {
  it('refuses to start, exit 2, on the seed config, which names no secret key file', async () => {
    const result = await runTsEntry(main, ['--config', seed]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^spark-signer: GpgSecretKeyFile is not set: the signer needs the armored secret key/m);
  });

  it('exits 2 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim(), '/nonexistent/spark.toml: cannot read config: file not found');
  });
});
