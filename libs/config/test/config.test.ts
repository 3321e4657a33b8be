import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  changedConfigKeys,
  ConfigError,
  defaultArchitectures,
  formatProblem,
  loadConfig,
  machineIdOf,
  nearestName,
  parseConfig,
  type ConfigEnvironment,
} from '@spark/config';

const seedFile = fileURLToPath(new URL('./fixtures/seed-spark.toml', import.meta.url));
const env: ConfigEnvironment = { hostname: () => 'hydrogen', architectures: () => ['amd64'] };
const dir = mkdtempSync(join(tmpdir(), 'spark-config-test-'));
let counter = 0;

function writeConfig(text: string): string {
  const file = join(dir, `spark-${counter++}.toml`);
  writeFileSync(file, text);
  return file;
}

const minimal = `LighthouseServer = 'tcp://lh.example.org:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEFDEADBEEF'\n`;

function problemsOf(text: string): string[] {
  const file = writeConfig(text);
  try {
    loadConfig(file, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.message.split('\n').map((line) => line.replace(`${file}`, 'FILE'));
  }
  assert.fail('config loaded although it should not');
}

describe('loadConfig', () => {
  it('loads the seed guide spark.toml unchanged, with spark defaults', () => {
    const { config, warnings } = loadConfig(seedFile, env);
    assert.equal(config.lighthouseServer, 'tcp://master.example.org:5570');
    assert.deepEqual(config.acceptedJobs, ['package-build', 'os-image-build']);
    assert.equal(config.machineOwner, 'ACME Inc.');
    assert.equal(config.machineName, 'hydrogen');
    // uuid.uuid5(UUID('d44a99a2-0b5d-415b-808a-790ad4684309'), 'hydrogen') in Python
    assert.equal(config.machineId, 'c05c855f-f940-5c59-abb6-b5c63d7d78e6');
    assert.equal(config.maxJobs, 1);
    assert.equal(config.workspaceRoot, '/var/lib/lkspark/');
    assert.equal(config.workspacesDir, '/var/lib/lkspark/workspaces');
    assert.equal(config.logsDir, '/var/lib/lkspark/logs');
    assert.deepEqual(config.architectures, ['amd64']);
    assert.equal(config.curveSecretKeyFile, '/etc/laniakea/keys/curve/secret/hydrogen-spark_private.sec');
    assert.equal(config.lighthouseServerKeyFile, '/etc/laniakea/keys/curve/hydrogen_lighthouse-server.pub');
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(config.gpgSecretKeyFile, null);
    assert.equal(config.connector.replyTimeoutMs, 15_000);
    assert.equal(config.builder.statusIntervalMs, 15_000);
    assert.equal(config.builder.maxLogBytes, 2 * 1024 ** 3);
    assert.equal(config.builder.downloadConnectTimeoutMs, 30_000);
    assert.equal(config.builder.downloadIdleTimeoutMs, 120_000);
    // The seed's GpgKeyID is a placeholder: a warning, since only the signer needs it.
    assert.deepEqual(
      warnings.map((w) => [w.key, w.line]),
      [['GpgKeyID', 7]],
    );
  });

  it('derives machine_id from MachineName exactly as Python uuid.uuid5 does, for non-ASCII names too', () => {
    assert.equal(machineIdOf('bördeland-build01'), 'ef15d65c-6a9f-5cbf-92c1-27ec3c720079');
  });

  it('reads every key spark reads and the new ones', () => {
    const file = writeConfig(`${minimal}
MachineName = 'helium'
MachineOwner = 'Wayne Enterprises'
MaxJobs = 4
WorkspaceRoot = '/srv/spark'
Architectures = ['amd64', 'i386']
CurveKeysDir = '/srv/keys'
RedisUrl = 'redis://127.0.0.1:6390/2'
GpgSecretKeyFile = '/etc/laniakea/keys/helium_secret.gpg'
DputHost = 'legacy'

[connector]
ReplyTimeout = 2.5
PollInterval = 1

[builder]
StatusInterval = 3
IdleOutputTimeout = 60
MaxLogSize = 104857600
DownloadConnectTimeout = 5
DownloadIdleTimeout = 20.5

[signer]
PassphraseFile = '/run/credentials/spark-signer.service/passphrase'

[uploader]
ConnectTimeout = 10
IdleTimeout = 45
GiveUpAfter = 7200
`);
    const { config, warnings } = loadConfig(file, env);
    assert.deepEqual(warnings, []);
    assert.equal(config.machineName, 'helium');
    assert.equal(config.maxJobs, 4);
    assert.equal(config.logsDir, '/srv/spark/logs');
    assert.deepEqual(config.architectures, ['amd64', 'i386']);
    assert.equal(config.curveSecretKeyFile, '/srv/keys/secret/helium-spark_private.sec');
    assert.equal(config.lighthouseServerKeyFile, '/srv/keys/helium_lighthouse-server.pub');
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6390/2');
    assert.equal(config.connector.replyTimeoutMs, 2500);
    assert.equal(config.connector.pollIntervalMs, 1000);
    assert.equal(config.builder.idleOutputTimeoutMs, 60_000);
    assert.equal(config.builder.maxLogBytes, 104_857_600);
    assert.equal(config.builder.downloadConnectTimeoutMs, 5_000);
    assert.equal(config.builder.downloadIdleTimeoutMs, 20_500);
    assert.equal(config.signer.passphraseFile, '/run/credentials/spark-signer.service/passphrase');
    assert.equal(config.signer.auditLog, '/srv/spark/audit/signer.log');
    assert.deepEqual(
      [config.uploader.connectTimeoutMs, config.uploader.idleTimeoutMs, config.uploader.giveUpAfterMs],
      [10_000, 45_000, 7_200_000],
    );
  });

  it('reads an old [uploader] FileTimeout as IdleTimeout and ignores Attempts, warning about both', () => {
    const file = writeConfig(`${minimal}[uploader]\nFileTimeout = 900\nAttempts = 3\n`);
    const { config, warnings } = loadConfig(file, env);
    assert.deepEqual(
      warnings.map((w) => formatProblem(w).replace(file, 'FILE')),
      [
        'FILE:5: warning: uploader.FileTimeout: deprecated: it bounded the whole PUT whatever the file size; read as IdleTimeout (no progress for that long). Rename it to IdleTimeout',
        'FILE:6: warning: uploader.Attempts: deprecated and ignored: uploads are retried with backoff until GiveUpAfter',
      ],
    );
    assert.deepEqual(
      [config.uploader.idleTimeoutMs, config.uploader.connectTimeoutMs, config.uploader.giveUpAfterMs],
      [900_000, 30_000, 21_600_000],
    );
  });

  it('loads a config without the trust-boundary keys as before: no Redis login, no file:// sources', () => {
    const { config } = loadConfig(writeConfig(minimal), env);
    assert.equal(config.redisCredentialsDir, null);
    assert.equal(config.builder.allowFileUrls, false);
    assert.equal(config.signer.auditLog, '/var/lib/lkspark/audit/signer.log');
  });

  it('reads RedisCredentialsDir and the development-only [builder] AllowFileUrls', () => {
    const { config, warnings } = loadConfig(
      writeConfig(`${minimal}RedisCredentialsDir = '/etc/laniakea/redis'
[builder]
AllowFileUrls = true
`),
      env,
    );
    assert.deepEqual(warnings, []);
    assert.equal(config.redisCredentialsDir, '/etc/laniakea/redis');
    assert.equal(config.builder.allowFileUrls, true);
    assert.deepEqual(
      problemsOf(`${minimal}RedisCredentialsDir = 'redis'
[builder]
AllowFileUrls = 'yes'
`),
      [
        'FILE:4: RedisCredentialsDir: expected an absolute path, got "redis"',
        'FILE:6: builder.AllowFileUrls: expected true or false, got the string "yes"',
      ],
    );
  });

  it('reads RedisMaxMemory (bytes, 0 for no limit), 1 GiB by default, and refuses a limit Redis could not work in', () => {
    assert.equal(loadConfig(writeConfig(minimal), env).config.redisMaxMemory, 1024 ** 3);
    assert.equal(loadConfig(writeConfig(`${minimal}RedisMaxMemory = 268435456\n`), env).config.redisMaxMemory, 268435456);
    assert.equal(loadConfig(writeConfig(`${minimal}RedisMaxMemory = 0\n`), env).config.redisMaxMemory, 0);
    assert.deepEqual(problemsOf(`${minimal}RedisMaxMemory = 1000\n`), [
      'FILE:4: RedisMaxMemory: expected 0 (no limit) or at least 67108864 bytes (64 MiB), got 1000',
    ]);
    assert.equal(problemsOf(`${minimal}RedisMaxMemory = '1gb'\n`).length, 1);
    assert.equal(problemsOf(`${minimal}RedisMaxMemory = -1\n`).length, 1);
  });

  it('puts the audit log in systemd\u2019s LogsDirectory when the unit sets one', () => {
    const { config } = loadConfig(writeConfig(minimal), { ...env, logsDirectory: () => '/var/log/spark-signer' });
    assert.equal(config.signer.auditLog, '/var/log/spark-signer/signer.log');
  });

  it('reports a TOML syntax error with file and line', () => {
    const [message] = problemsOf(`LighthouseServer = 'tcp://a:1'\nAcceptedJobs = ['package-build'\nGpgKeyID = 'x'\n`);
    assert.match(message ?? '', /^FILE:\d+: TOML syntax error at column \d+: /);
  });

  it('reports a truncated file as a syntax error', () => {
    const [message] = problemsOf(`LighthouseServer = 'tcp://a:1'\nAcceptedJobs = ['package-bu`);
    assert.match(message ?? '', /^FILE:\d+: TOML syntax error at column \d+: unfinished array/);
  });

  it('names each missing required key', () => {
    assert.deepEqual(problemsOf(`MachineOwner = 'x'\n`), [
      'FILE: LighthouseServer: required key is missing',
      'FILE: AcceptedJobs: required key is missing',
      'FILE: GpgKeyID: required key is missing',
    ]);
  });

  it('rejects MaxJobs = 0 with its line', () => {
    assert.deepEqual(problemsOf(`${minimal}MaxJobs = 0\n`), ['FILE:4: MaxJobs: must be between 1 and 256, got 0']);
  });

  it('rejects wrong types with key, line and what was found', () => {
    assert.deepEqual(problemsOf(`${minimal}MaxJobs = 'four'\nArchitectures = 'amd64'\n`), [
      'FILE:4: MaxJobs: expected an integer, got the string "four"',
      'FILE:5: Architectures: expected an array of strings, got the string "amd64"',
    ]);
  });

  it('rejects an empty AcceptedJobs, since a worker that accepts nothing is pointless', () => {
    assert.deepEqual(problemsOf(`LighthouseServer = 'tcp://a:1'\nAcceptedJobs = []\nGpgKeyID = 'DEADBEEF'\n`), [
      'FILE:2: AcceptedJobs: must list at least one entry',
    ]);
  });

  it('rejects a LighthouseServer that is not a ZeroMQ endpoint', () => {
    assert.deepEqual(problemsOf(minimal.replace("'tcp://lh.example.org:5570'", "'master.example.org'")), [
      'FILE:1: LighthouseServer: expected a ZeroMQ endpoint like "tcp://master.example.org:5570", got "master.example.org"',
    ]);
  });

  it('reads GpgSecretKeyCredential, the key as an encrypted systemd credential, in place of GpgSecretKeyFile', () => {
    const { config, warnings } = loadConfig(writeConfig(`${minimal}GpgSecretKeyCredential = 'spark-signer-key'\n`), env);
    assert.deepEqual(warnings, []);
    assert.equal(config.gpgSecretKeyCredential, 'spark-signer-key');
    assert.equal(config.gpgSecretKeyFile, null);
    assert.equal(loadConfig(writeConfig(minimal), env).config.gpgSecretKeyCredential, null);
  });

  it('refuses GpgSecretKeyCredential beside GpgSecretKeyFile, and a name that is no credential name', () => {
    assert.deepEqual(
      problemsOf(`${minimal}GpgSecretKeyFile = '/etc/laniakea/keys/h_secret.gpg'\nGpgSecretKeyCredential = 'spark-signer-key'\n`),
      [
        'FILE:5: GpgSecretKeyCredential: GpgSecretKeyFile is set too: the key is either a file in clear (GpgSecretKeyFile) or an encrypted systemd credential (GpgSecretKeyCredential); remove the other',
      ],
    );
    assert.deepEqual(problemsOf(`${minimal}GpgSecretKeyCredential = '../key'\n`), [
      'FILE:4: GpgSecretKeyCredential: expected a systemd credential name (letters, digits, ".", "_", "-"; at most 255), got "../key"',
    ]);
  });

  it('rejects a relative WorkspaceRoot and an architecture that could become a path', () => {
    assert.deepEqual(problemsOf(`${minimal}WorkspaceRoot = 'spark'\nArchitectures = ['../amd64']\n`), [
      'FILE:4: WorkspaceRoot: expected an absolute path, got "spark"',
      'FILE:5: Architectures: "../amd64" is not a Debian architecture name',
    ]);
  });

  it('rejects bad values inside a service table with the qualified key', () => {
    assert.deepEqual(problemsOf(`${minimal}\n[connector]\nReplyTimeout = -1\n`), [
      'FILE:6: connector.ReplyTimeout: must be at least 0.001, got -1',
    ]);
    assert.deepEqual(problemsOf(`${minimal}\n[builder]\nMaxLogSize = 100\nDownloadIdleTimeout = 0\n`), [
      'FILE:6: builder.MaxLogSize: must be between 4096 and 9007199254740991, got 100',
      'FILE:7: builder.DownloadIdleTimeout: must be at least 0.001, got 0',
    ]);
  });

  it('warns about an unknown key and suggests the nearest known one', () => {
    const file = writeConfig(`${minimal}AcceptedJob = ['package-build']\n\n[builder]\nStatusIntervall = 5\n`);
    const { warnings } = loadConfig(file, env);
    assert.deepEqual(
      warnings.map((w) => [w.key, w.line, w.message]),
      [
        ['AcceptedJob', 4, 'unknown key, ignored (did you mean AcceptedJobs?)'],
        ['builder.StatusIntervall', 7, 'unknown key, ignored (did you mean builder.StatusInterval?)'],
      ],
    );
  });

  it('says when the file cannot be read', () => {
    assert.throws(() => loadConfig(join(dir, 'missing.toml'), env), /missing\.toml: cannot read config: file not found/);
    if (process.getuid?.() !== 0) {
      const file = writeConfig(minimal);
      chmodSync(file, 0);
      assert.throws(() => loadConfig(file, env), /permission denied/);
    }
  });

  it('falls back to the host name when MachineName is absent', () => {
    const file = writeConfig(minimal);
    assert.equal(loadConfig(file, { ...env, hostname: () => 'lithium' }).config.machineName, 'lithium');
  });
});

describe('defaultArchitectures', () => {
  it('maps machine strings as spark does', () => {
    assert.deepEqual(defaultArchitectures('x86_64'), ['amd64']);
    assert.deepEqual(defaultArchitectures('i686'), ['i386']);
    assert.deepEqual(defaultArchitectures('aarch64'), ['arm64']);
    assert.deepEqual(defaultArchitectures('riscv64'), ['riscv64']);
  });
});

describe('nearestName', () => {
  it('suggests only plausible typos', () => {
    assert.equal(nearestName('maxjobs', ['MaxJobs', 'MachineName']), 'MaxJobs');
    assert.equal(nearestName('Completely', ['MaxJobs', 'MachineName']), null);
  });
});

describe('LogLevel and the keys SIGHUP compares', () => {
  it('reads LogLevel (default info) and refuses a name pino does not know, with its line', () => {
    assert.equal(parseConfig(minimal, 'spark.toml', env).config.logLevel, 'info');
    assert.equal(parseConfig(`LogLevel = 'debug'\n${minimal}`, 'spark.toml', env).config.logLevel, 'debug');
    assert.throws(
      () => parseConfig(`${minimal}LogLevel = 'verbose'\n`, 'spark.toml', env),
      (error: ConfigError) =>
        error.message === 'spark.toml:4: LogLevel: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"' &&
        !error.unreadable,
    );
  });

  it('marks a config file that cannot be read as unreadable, one that does not parse as not', () => {
    assert.throws(
      () => loadConfig(join(dir, 'absent.toml'), env),
      (error: ConfigError) => error.unreadable,
    );
    assert.throws(
      () => loadConfig(writeConfig('x = ['), env),
      (error: ConfigError) => !error.unreadable,
    );
  });

  it('names each changed key as the file spells it, and nothing for derived values', () => {
    const before = parseConfig(minimal, 'a.toml', env).config;
    const after = parseConfig(
      `${minimal}MachineName = 'helium'\n[connector]\nPollInterval = 1\n[uploader]\nGiveUpAfter = 60\n`,
      'b.toml',
      env,
    ).config;
    assert.deepEqual(
      changedConfigKeys(before, after).map(({ key }) => key),
      ['MachineName', '[connector] PollInterval', '[uploader] GiveUpAfter'],
    );
    assert.deepEqual(changedConfigKeys(before, parseConfig(minimal, 'c.toml', env).config), []);
  });
});

describe('MetricsListen', () => {
  const listens = (text: string) => {
    const { config } = parseConfig(text, 'spark.toml', env);
    return [
      config.metricsListen,
      config.connector.metricsListen,
      config.builder.metricsListen,
      config.signer.metricsListen,
      config.uploader.metricsListen,
    ];
  };

  it('listens on loopback by default, takes the top-level address for every service, and a table’s own over it', () => {
    assert.deepEqual(listens(minimal), ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1']);
    assert.deepEqual(listens(`MetricsListen = '0.0.0.0'\n${minimal}`), ['0.0.0.0', '0.0.0.0', '0.0.0.0', '0.0.0.0', '0.0.0.0']);
    assert.deepEqual(
      listens(`MetricsListen = '192.0.2.10'\n${minimal}[signer]\nMetricsListen = '127.0.0.1'\n[uploader]\nMetricsListen = 'fd00::2'\n`),
      ['192.0.2.10', '192.0.2.10', '192.0.2.10', '127.0.0.1', 'fd00::2'],
    );
    assert.deepEqual(listens(`${minimal}[builder]\nMetricsListen = '::'\n`), ['127.0.0.1', '127.0.0.1', '::', '127.0.0.1', '127.0.0.1']);
  });

  it('refuses a host name, a bracketed IPv6 address and a number, with file, line and the fix', () => {
    assert.deepEqual(problemsOf(`${minimal}MetricsListen = 'localhost'\n`), [
      'FILE:4: MetricsListen: expected an IPv4 or IPv6 address to listen on, like "127.0.0.1" (this host only), "192.0.2.10" (one interface), "0.0.0.0" (every IPv4 address) or "::" (every address), got "localhost"; a host name is not accepted, write the address it stands for',
    ]);
    assert.deepEqual(problemsOf(`${minimal}\n[connector]\nPollInterval = 1\nMetricsListen = '[::1]'\n[uploader]\nMetricsListen = 9624\n`), [
      'FILE:7: connector.MetricsListen: expected an IPv4 or IPv6 address to listen on, like "127.0.0.1" (this host only), "192.0.2.10" (one interface), "0.0.0.0" (every IPv4 address) or "::" (every address), got "[::1]"; write an IPv6 address without brackets: "::1"',
      'FILE:9: uploader.MetricsListen: expected a string, got the integer 9624',
    ]);
    assert.deepEqual(problemsOf(`${minimal}[signer]\nMetricsListen = '10.0.0.300'\n`), [
      'FILE:5: signer.MetricsListen: expected an IPv4 or IPv6 address to listen on, like "127.0.0.1" (this host only), "192.0.2.10" (one interface), "0.0.0.0" (every IPv4 address) or "::" (every address), got "10.0.0.300"',
    ]);
  });

  it('names a changed MetricsListen for SIGHUP as the file spells it: the top-level key and each table it applies to', () => {
    const before = parseConfig(minimal, 'a.toml', env).config;
    assert.deepEqual(
      changedConfigKeys(before, parseConfig(`${minimal}[uploader]\nMetricsListen = '::1'\n`, 'b.toml', env).config).map(({ key }) => key),
      ['[uploader] MetricsListen'],
    );
    assert.deepEqual(
      changedConfigKeys(
        before,
        parseConfig(`MetricsListen = '::'\n${minimal}[signer]\nMetricsListen = '127.0.0.1'\n`, 'c.toml', env).config,
      ).map(({ key }) => key),
      ['MetricsListen', '[connector] MetricsListen', '[builder] MetricsListen', '[uploader] MetricsListen'],
    );
  });
});
