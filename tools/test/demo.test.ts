import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));

describe('npm start (the demo)', () => {
  it('builds the sample job in debspawn, signs and uploads it, verifies it with gpgv, and leaves no process behind', async (t) => {
    const child = spawn('npm', ['start'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 8 * 60_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);
    const dir = /everything is kept in (\/\S+)/.exec(output)?.[1];
    t.after(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));
    assert.equal(code, 0, output.slice(-4000));
    for (const stage of [
      'job-accepted received',
      'artifacts handed to the sign queue',
      'signed; handed to upload',
      'upload complete',
      'job-success received',
    ]) {
      assert.ok(output.includes(stage), `the demo did not show "${stage}"`);
    }
    assert.match(output, /_amd64\.changes {2}— {2}gpgv: Good signature from "Spark Worker/);
    assert.match(output, /\.dud {2}— {2}gpgv: Good signature from "Spark Worker/);
    assert.ok(dir, 'the demo says where its files are');
    const left = await run('pgrep', ['-af', dir]).then(
      ({ stdout }) => stdout.trim(),
      () => '',
    );
    assert.equal(left, '', `processes left behind:\n${left}`);
  });
});
