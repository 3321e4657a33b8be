import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { EX_CONFIG, EX_NOINPUT, loadConfigOrExitCode, type ConfigEnvironment } from '@spark/config';

const env: ConfigEnvironment = { hostname: () => 'hydrogen', architectures: () => ['amd64'] };
const dir = mkdtempSync(join(tmpdir(), 'spark-config-exit-'));
const minimal = `LighthouseServer = 'tcp://lh.example.org:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEFDEADBEEF'\n`;

/** Runs loadConfigOrExitCode on `text` (or on a file that does not exist); what it returned and what it wrote. */
function load(text: string | null): { result: ReturnType<typeof loadConfigOrExitCode>; stderr: string; file: string } {
  const file = join(dir, `spark-${Math.random().toString(36).slice(2)}.toml`);
  if (text !== null) writeFileSync(file, text);
  const stderr = new PassThrough();
  const chunks: string[] = [];
  stderr.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  const result = loadConfigOrExitCode(file, stderr, env);
  return { result, stderr: chunks.join(''), file };
}

describe('loadConfigOrExitCode', () => {
  it('returns the config and writes each warning as file:line: warning: key: message', () => {
    const { result, stderr, file } = load(`${minimal}MaxJob = 2\n`);
    assert.equal(typeof result, 'object');
    assert.equal((result as Exclude<typeof result, number>).machineName, 'hydrogen');
    assert.equal(stderr, `${file}:4: warning: MaxJob: unknown key, ignored (did you mean MaxJobs?)\n`);
  });

  it('writes every problem with its line and returns 78 (EX_CONFIG) for a config that does not check', () => {
    const { result, stderr, file } = load(`${minimal}MaxJobs = 0\nLogLevel = 'loud'\n`);
    assert.equal(result, EX_CONFIG);
    assert.equal(
      stderr,
      `${file}:4: MaxJobs: must be between 1 and 256, got 0\n` +
        `${file}:5: LogLevel: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"\n`,
    );
  });

  it('returns 78 (EX_CONFIG) for TOML that does not parse', () => {
    const { result, stderr, file } = load('x = [');
    assert.equal(result, EX_CONFIG);
    assert.match(stderr, new RegExp(`^${file.replaceAll('.', '\\.')}:1: TOML syntax error at column \\d+: `));
  });

  it('returns 66 (EX_NOINPUT) for a file that is not there, naming it', () => {
    const { result, stderr, file } = load(null);
    assert.equal(result, EX_NOINPUT);
    assert.equal(stderr, `${file}: cannot read config: file not found\n`);
  });
});
