import { join } from 'node:path';
import { parse, TomlError } from 'smol-toml';
// Subpaths without zod: the config is read by `spark run`'s supervisor too, which needs no schema code.
import { DEFAULT_QUEUE_PREFIX, JOB_KINDS } from '@spark/protocol/constants';
import { ARCHITECTURE, isValidName, MAX_ARCHITECTURE_LENGTH } from '@spark/protocol/name-patterns';
import { systemEnvironment, type ConfigEnvironment } from './config-environment.js';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { isCredentialName } from './credential-name.js';
import { SERVICE_KEYS, TOP_LEVEL_KEYS } from './config-keys.js';
import {
  DEFAULT_CURVE_KEYS_DIR,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_REDIS_MAX_MEMORY,
  DEFAULT_REDIS_URL,
  DEFAULT_WORKSPACE_ROOT,
  MIN_REDIS_MAX_MEMORY,
} from './defaults.js';
import { isLogLevel, LOG_LEVELS } from './log-level.js';
import { machineIdOf } from './machine.js';
import { readServiceSettings } from './service-settings.js';
import type { SparkConfig } from './spark-config.js';
import { TableReader, type Table } from './table-reader.js';

/** A config loaded without errors, with any warnings (unknown keys) found on the way. */
export interface LoadedConfig {
  config: SparkConfig;
  warnings: ConfigProblem[];
}

/** Checks spark.toml text as {@link loadConfig} does; `file` is only used in messages and defaults. */
export function parseConfig(source: string, file: string, env: ConfigEnvironment = systemEnvironment): LoadedConfig {
  let data: Table;
  try {
    data = parse(source);
  } catch (error) {
    if (error instanceof TomlError) {
      const message = (error.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
      throw new ConfigError([
        { severity: 'error', file, key: null, line: error.line, message: `TOML syntax error at column ${error.column}: ${message}` },
      ]);
    }
    throw error;
  }

  const problems: ConfigProblem[] = [];
  const reader = new TableReader(source, file, problems);

  reader.checkUnknown(data, null, [...TOP_LEVEL_KEYS, ...Object.keys(SERVICE_KEYS)]);

  const lighthouseServer = reader.string(data, null, 'LighthouseServer', { required: true });
  if (lighthouseServer !== undefined && !/^(tcp|ipc|inproc):\/\/\S+$/.test(lighthouseServer)) {
    reader.error(
      null,
      'LighthouseServer',
      `expected a ZeroMQ endpoint like "tcp://master.example.org:5570", got ${JSON.stringify(lighthouseServer)}`,
    );
  }
  const acceptedJobs = reader.stringArray(data, null, 'AcceptedJobs', { required: true, nonEmpty: true });
  for (const kind of acceptedJobs ?? []) {
    if (!(JOB_KINDS as readonly string[]).includes(kind)) {
      reader.warning(
        null,
        'AcceptedJobs',
        `unknown job kind ${JSON.stringify(kind)} (known: ${JOB_KINDS.join(', ')}); it is advertised but no builder runs it`,
      );
    }
  }
  const machineOwner = reader.string(data, null, 'MachineOwner') ?? '';
  let machineName = reader.string(data, null, 'MachineName');
  if (machineName === undefined || machineName === '') {
    try {
      machineName = env.hostname();
    } catch (error) {
      reader.error(null, 'MachineName', `not set, and the host name could not be read: ${(error as Error).message}`);
    }
  }
  const gpgKeyId = reader.string(data, null, 'GpgKeyID', { required: true });
  if (
    gpgKeyId !== undefined &&
    !/^(0x)?([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$/.test(gpgKeyId.replace(/\s+/g, ''))
  ) {
    // A warning, not an error: the seed guide's own example holds a placeholder, and
    // only the signer needs the key (it refuses to start unless the key matches).
    reader.warning(
      null,
      'GpgKeyID',
      `${JSON.stringify(gpgKeyId)} is not a key id or fingerprint (8, 16, 40 or 64 hex digits); the signer will refuse to start until it names its key`,
    );
  }
  const maxJobs = reader.integer(data, null, 'MaxJobs', { min: 1, max: 256 }) ?? 1;
  const workspaceRoot = reader.path(data, null, 'WorkspaceRoot') ?? DEFAULT_WORKSPACE_ROOT;
  let architectures = reader.stringArray(data, null, 'Architectures');
  if (architectures === undefined || architectures.length === 0) {
    architectures = env.architectures();
  }
  for (const name of architectures) {
    if (!isValidName(ARCHITECTURE, name, MAX_ARCHITECTURE_LENGTH)) {
      reader.error(null, 'Architectures', `${JSON.stringify(name)} is not a Debian architecture name`);
    }
  }
  reader.string(data, null, 'DputHost');
  const curveKeysDir = reader.path(data, null, 'CurveKeysDir') ?? DEFAULT_CURVE_KEYS_DIR;
  const redisUrl = reader.string(data, null, 'RedisUrl') ?? DEFAULT_REDIS_URL;
  if (!/^(rediss?:\/\/\S+|unix:\/\/?\S+|\/\S+)$/.test(redisUrl)) {
    // Shown without any password it may carry (everything between "//" and "@").
    const shown = redisUrl.replace(/\/\/[^@\s]*@/, '//***@');
    reader.error(null, 'RedisUrl', `expected redis://host:port[/db], rediss://…, or a unix socket path, got ${JSON.stringify(shown)}`);
  }
  const queuePrefix = reader.string(data, null, 'QueuePrefix') ?? DEFAULT_QUEUE_PREFIX;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(queuePrefix)) {
    reader.error(null, 'QueuePrefix', 'expected 1 to 64 letters, digits, "_" or "-"');
  }
  const gpgSecretKeyFile = reader.path(data, null, 'GpgSecretKeyFile') ?? null;
  const gpgSecretKeyCredential = reader.string(data, null, 'GpgSecretKeyCredential') ?? null;
  if (gpgSecretKeyCredential !== null && !isCredentialName(gpgSecretKeyCredential)) {
    reader.error(
      null,
      'GpgSecretKeyCredential',
      `expected a systemd credential name (letters, digits, ".", "_", "-"; at most 255), got ${JSON.stringify(gpgSecretKeyCredential)}`,
    );
  }
  if (gpgSecretKeyFile !== null && gpgSecretKeyCredential !== null) {
    reader.error(
      null,
      'GpgSecretKeyCredential',
      'GpgSecretKeyFile is set too: the key is either a file in clear (GpgSecretKeyFile) or an encrypted systemd credential (GpgSecretKeyCredential); remove the other',
    );
  }
  const redisCredentialsDir = reader.path(data, null, 'RedisCredentialsDir') ?? null;
  const redisMaxMemory = reader.integer(data, null, 'RedisMaxMemory', { min: 0, max: Number.MAX_SAFE_INTEGER }) ?? DEFAULT_REDIS_MAX_MEMORY;
  if (redisMaxMemory !== 0 && redisMaxMemory < MIN_REDIS_MAX_MEMORY) {
    reader.error(null, 'RedisMaxMemory', `expected 0 (no limit) or at least ${MIN_REDIS_MAX_MEMORY} bytes (64 MiB), got ${redisMaxMemory}`);
  }

  const logLevel = reader.string(data, null, 'LogLevel') ?? 'info';
  if (!isLogLevel(logLevel)) {
    reader.error(null, 'LogLevel', `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }

  const globalMetricsListen = reader.address(data, null, 'MetricsListen') ?? DEFAULT_METRICS_LISTEN;

  const { connector, builder, signer, uploader } = readServiceSettings(reader, data, { workspaceRoot, globalMetricsListen, env });

  const errors = problems.filter((p) => p.severity === 'error');
  if (
    errors.length > 0 ||
    lighthouseServer === undefined ||
    acceptedJobs === undefined ||
    gpgKeyId === undefined ||
    machineName === undefined
  ) {
    throw new ConfigError(problems);
  }
  const config: SparkConfig = {
    file,
    lighthouseServer,
    acceptedJobs,
    machineOwner,
    machineName,
    machineId: machineIdOf(machineName),
    gpgKeyId: gpgKeyId.replace(/\s+/g, ''),
    maxJobs,
    workspaceRoot,
    workspacesDir: join(workspaceRoot, 'workspaces'),
    logsDir: join(workspaceRoot, 'logs'),
    architectures,
    curveKeysDir,
    curveSecretKeyFile: join(curveKeysDir, 'secret', `${machineName}-spark_private.sec`),
    lighthouseServerKeyFile: join(curveKeysDir, `${machineName}_lighthouse-server.pub`),
    redisUrl,
    queuePrefix,
    redisCredentialsDir,
    redisMaxMemory,
    gpgSecretKeyFile,
    gpgSecretKeyCredential,
    logLevel: isLogLevel(logLevel) ? logLevel : 'info',
    metricsListen: globalMetricsListen,
    connector,
    builder,
    signer,
    uploader,
  };
  return { config, warnings: problems };
}
