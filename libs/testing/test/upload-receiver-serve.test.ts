import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runTsEntry, waitFor } from '@spark/testing';

const WAIT = { timeoutMs: 15_000, intervalMs: 20 };

const serve = fileURLToPath(new URL('../src/upload-receiver/serve.ts', import.meta.url));

describe('upload receiver as a process', () => {
  it('serves PUTs under its prefix, prints each request as a JSON line, and stops on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spark-receiver-serve-'));
    const child = spawn(
      process.execPath,
      ['--conditions=@spark/source', '--import', 'tsx', serve, '--dir', dir, '--repo', 'master', '--prefix', '/_upload'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit');
    try {
      await waitFor('the receiver to print where it listens', () => output.includes('\n'), WAIT);
      const { listening } = JSON.parse(output.split('\n')[0] as string) as { listening: string };
      assert.match(listening, /^http:\/\/127\.0\.0\.1:\d+\/_upload$/);
      const status = await new Promise<number>((resolve, reject) => {
        request(`${listening}/master/a_1.0.dsc`, { method: 'PUT' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
          .on('error', reject)
          .end('hello');
      });
      assert.equal(status, 201);
      assert.equal(await readFile(join(dir, 'master', 'a_1.0.dsc'), 'utf8'), 'hello');
      await waitFor('the receiver to print the PUT', () => output.split('\n').length >= 3, WAIT);
      assert.deepEqual(JSON.parse(output.split('\n')[1] as string), { method: 'PUT', url: '/_upload/master/a_1.0.dsc', status: 201 });
    } finally {
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits 64 with its usage when --dir or --repo is missing', async () => {
    const result = await runTsEntry(serve, ['--repo', 'master']);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /--dir and --repo are required/);
  });
});
