import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runSpark } from './run-spark.js';

/** Every command line `spark --help` lists: `config check`, `keytool key-new`, `run`, … */
function listedCommands(help: string): string[][] {
  const lines = help.split('\n').filter((line) => /^ {2}[a-z]/.test(line));
  const words = lines.map((line) => line.trim().split(/\s+/));
  return words.map(([name = '', second = '']) => (/^[a-z][a-z-]*$/.test(second) ? [name, second] : [name]));
}

describe('spark --help and --version', () => {
  it('lists every command and exits 0', async () => {
    const { code, stdout } = await runSpark(['--help']);
    assert.equal(code, 0);
    const listed = listedCommands(stdout).map((words) => words.join(' '));
    for (const command of [
      'config check',
      'verify',
      'run',
      'status',
      'dashboard',
      'keytool key-new',
      'keytool install-worker-key',
      'keytool install-signer-key',
      'retry-upload',
      'cancel',
      'logs',
    ]) {
      assert.ok(listed.includes(command), `spark --help does not list ${command}`);
    }
  });

  it('prints the version of the installed package', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.deepEqual(await runSpark(['--version']), { code: 0, stdout: `spark ${version}\n`, stderr: '' });
  });

  it('answers --help for every command it lists, with that command usage, exit 0', async () => {
    const { stdout } = await runSpark(['--help']);
    for (const words of listedCommands(stdout)) {
      for (const flag of ['--help', '-h']) {
        const result = await runSpark([...words, flag]);
        assert.equal(result.code, 0, `spark ${words.join(' ')} ${flag}: ${result.stderr}`);
        assert.match(result.stdout, new RegExp(`^usage:\\n {2}${words[0]} `), `spark ${words.join(' ')} ${flag}`);
        assert.equal(result.stderr, '');
      }
    }
  });

  it('refuses an unknown option of every listed command with exit 64 and the usage', async () => {
    const { stdout } = await runSpark(['--help']);
    for (const words of listedCommands(stdout)) {
      const result = await runSpark([...words, '--no-such-option']);
      assert.equal(result.code, 64, `spark ${words.join(' ')} --no-such-option exited ${result.code}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^spark ${words[0]}[^:]*: .*no-such-option`), result.stderr);
      assert.match(result.stderr, new RegExp(`\\nusage:\\n {2}${words[0]} `));
    }
  });

  it('refuses an unknown command with exit 64', async () => {
    const result = await runSpark(['frobnicate']);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /^spark: unknown command "frobnicate"\nusage: spark <command>/);
  });
});
