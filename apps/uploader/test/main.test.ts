import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runTsEntry } from '@spark/testing';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('spark-uploader main', () => {
  it('exits 2 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim(), '/nonexistent/spark.toml: cannot read config: file not found');
  });
});
