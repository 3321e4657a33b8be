import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parse, TomlError } from 'smol-toml';
// Subpaths without zod: the config is read by `spark run`'s supervisor too, which needs no schema code.
import { DEFAULT_QUEUE_PREFIX, JOB_KINDS, LIGHTHOUSE_REPLY_TIMEOUT_MS, JOB_STATUS_INTERVAL_MS } from '@spark/protocol/constants';
import { ARCHITECTURE, isValidName, MAX_ARCHITECTURE_LENGTH, SUITE } from '@spark/protocol/name-patterns';
import { defaultArchitectures, machineIdOf, readHostname } from './machine.js';
import { nearestName } from './nearest-name.js';

/** Where spark and this project read their configuration by default. */
export const DEFAULT_CONFIG_FILE = '/etc/laniakea/spark.toml';
/** spark's workspace root default (spark/config.py). */
export const DEFAULT_WORKSPACE_ROOT = '/var/lib/lkspark/';
/** Directory of the Curve keys as spark and Laniakea's Ansible setup place them. */
export const DEFAULT_CURVE_KEYS_DIR = '/etc/laniakea/keys/curve';
/** Redis the services share on one host. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/**
 * Address the services' `/metrics` endpoints listen on by default
 * (`MetricsListen`): loopback, so that only this host can scrape them.
 */
export const DEFAULT_METRICS_LISTEN = '127.0.0.1';
/** pino's level names, most to least severe, then `silent`: what `LogLevel` and `SPARK_LOG_LEVEL` accept. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];
/** True when `value` is one of pino's level names. */
export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Settings of the connector (`[connector]` table). Durations in seconds in the file, ms here. */
export interface ConnectorSettings {
  /** ms to wait for a Lighthouse reply before retrying on a fresh socket (`ReplyTimeout`, default 15 s as spark). */
  replyTimeoutMs: number;
  /** ms between job requests while idle (`PollInterval`, default 5 s). */
  pollIntervalMs: number;
  /** ms between `archive-info` refreshes (`ArchiveInfoInterval`, default 300 s). */
  archiveInfoIntervalMs: number;
  /** ms a fetched job may wait for a builder before it is rejected back (`StartTimeout`, default 600 s). */
  startTimeoutMs: number;
  /**
   * ms after its first rejection here at which a job that keeps coming back for a
   * reason only an operator can fix (no debspawn image for its suite) is reported
   * failed instead of rejected again (`GiveUpRejectedAfter`, default 12 h).
   */
  giveUpRejectedAfterMs: number;
  /**
   * First cool-down in ms of a job this worker rejected: handed out again sooner, it goes straight
   * back and its kind is left out of requests meanwhile; doubled per rejection up to 30 min
   * (`RejectedCooldown`, default 30 s).
   */
  rejectedCooldownMs: number;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9621; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** Settings of the builder (`[builder]` table). */
export interface BuilderSettings {
  /** ms between log excerpts sent to Lighthouse (`StatusInterval`, default 15 s as spark). */
  statusIntervalMs: number;
  /** Hard time limit of one job in ms (`MaxBuildTime`, default 24 h). */
  maxBuildTimeMs: number;
  /** ms without a line of output before a build is killed (`IdleOutputTimeout`, default 150 min as sbuild). */
  idleOutputTimeoutMs: number;
  /** Bytes of build output a job's log may hold; a build that writes more is stopped and fails (`MaxLogSize`, default 2 GiB). */
  maxLogBytes: number;
  /** ms to connect to the archive a source package comes from (`DownloadConnectTimeout`, default 30 s). */
  downloadConnectTimeoutMs: number;
  /** ms a download may go without receiving a byte before it fails and the job is rejected back (`DownloadIdleTimeout`, default 120 s). */
  downloadIdleTimeoutMs: number;
  /** ms to let running jobs finish on shutdown before they are killed and rejected (`DrainTimeout`, default 600 s). */
  drainTimeoutMs: number;
  /** `debspawn` executable (`Debspawn`, default `debspawn` from PATH). */
  debspawn: string;
  /** Base port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9631): `spark-builder@N` serves on base + N − 1, so builder instances never take the connector's, signer's or uploader's 9621/9623/9624; 0 turns it off. */
  metricsPort: number;
  /** Address every builder instance's `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
  /**
   * Development only: accept `file://` source URLs in jobs (`AllowFileUrls`,
   * default false). Never set on a production worker: a job could make the
   * builder read any file it can read.
   */
  allowFileUrls: boolean;
  /**
   * Suites this worker builds for (`Suites`, default none). Nothing at run time
   * reads it: `spark verify` checks that debspawn has an image for each, for
   * every architecture in `Architectures`.
   */
  suites: string[];
}

/** Settings of the signer (`[signer]` table). */
export interface SignerSettings {
  /** File holding the secret key's passphrase (`PassphraseFile`), or null for an unprotected key. */
  passphraseFile: string | null;
  /**
   * Append-only log of every signature and refusal (`AuditLog`; default
   * `$LOGS_DIRECTORY/signer.log` when systemd's `LogsDirectory=` sets it —
   * `/var/log/spark-signer/signer.log` in spark-signer.service — else
   * `<WorkspaceRoot>/audit/signer.log`). Its directory must be the signer's alone.
   */
  auditLog: string;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9623; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** Settings of the uploader (`[uploader]` table). */
export interface UploaderSettings {
  /** ms to wait for a connection to the archive (TCP and TLS handshake) before the try fails (`ConnectTimeout`, default 30 s). */
  connectTimeoutMs: number;
  /**
   * ms without progress (no byte of the file taken by the connection, no byte of the answer) before a PUT is cut
   * (`IdleTimeout`, default 120 s). A slow but steady upload is never cut, whatever its size. The deprecated
   * `FileTimeout` (it bounded the whole PUT) is read as this when `IdleTimeout` is not set.
   */
  idleTimeoutMs: number;
  /**
   * ms after a round's first upload try at which an upload still failing is given up and the job reported failed
   * to Lighthouse with the reason (`GiveUpAfter`, default 6 h). Until then it is retried with backoff.
   */
  giveUpAfterMs: number;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9624; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** The effective worker configuration: spark's keys with spark's defaults, plus this project's. */
export interface SparkConfig {
  /** The file it was read from. */
  file: string;
  /** ZeroMQ endpoint of Lighthouse, e.g. `tcp://master.example.org:5570` (`LighthouseServer`, required). */
  lighthouseServer: string;
  /** Job kinds this worker takes (`AcceptedJobs`, required, non-empty). */
  acceptedJobs: string[];
  /** Owner sent with job requests (`MachineOwner`, default empty). */
  machineOwner: string;
  /** Name Lighthouse knows the worker by (`MachineName`, default `/etc/hostname` trimmed). */
  machineName: string;
  /** UUIDv5 of `machineName` in spark's namespace: the worker's identity at Lighthouse. */
  machineId: string;
  /** OpenPGP key (fingerprint or key id) the signer signs with (`GpgKeyID`, required). */
  gpgKeyId: string;
  /** Concurrent jobs per builder (`MaxJobs`, default 1, at least 1). */
  maxJobs: number;
  /** Root of workspaces and logs (`WorkspaceRoot`, default `/var/lib/lkspark/`). */
  workspaceRoot: string;
  /** `<WorkspaceRoot>/workspaces`: one directory per job uuid. */
  workspacesDir: string;
  /** `<WorkspaceRoot>/logs`: one `<uuid>.log` per job. */
  logsDir: string;
  /** Architectures built here (`Architectures`, default from the machine, as spark maps it). */
  architectures: string[];
  /** Directory of the Curve keys (`CurveKeysDir`, default `/etc/laniakea/keys/curve`). */
  curveKeysDir: string;
  /** `<CurveKeysDir>/secret/<machine>-spark_private.sec`: the worker's Curve secret key. */
  curveSecretKeyFile: string;
  /** `<CurveKeysDir>/<machine>_lighthouse-server.pub`: Lighthouse's Curve public key. */
  lighthouseServerKeyFile: string;
  /**
   * Redis shared by this host's services (`RedisUrl`, default
   * `redis://127.0.0.1:6379`; deploy/install.sh adds the socket of the
   * worker's own instance, `/run/redis-spark/redis-server.sock`, when unset).
   */
  redisUrl: string;
  /** BullMQ key prefix (`QueuePrefix`, default `spark`). */
  queuePrefix: string;
  /**
   * Directory of the Redis ACL users' password files (`RedisCredentialsDir`,
   * default none: no login, Redis's default user as before). When set, each
   * service logs in as `spark-<service>` with `<dir>/spark-<service>.password`
   * (see `spark redis-acl`).
   */
  redisCredentialsDir: string | null;
  /**
   * `maxmemory` that deploy/install.sh gives this host's redis-server
   * (`RedisMaxMemory`, bytes; default {@link DEFAULT_REDIS_MAX_MEMORY}; 0: no
   * limit). With `maxmemory-policy noeviction`, Redis refuses writes past it
   * instead of growing until the kernel's OOM killer picks a process.
   */
  redisMaxMemory: number;
  /** Armored OpenPGP secret key the signer loads (`GpgSecretKeyFile`); only the signer requires it. */
  gpgSecretKeyFile: string | null;
  /**
   * Log level of every service (`LogLevel`, default `info`; one of
   * {@link LOG_LEVELS}). `SPARK_LOG_LEVEL` in a service's environment takes
   * precedence. A service applies a changed value on SIGHUP.
   */
  logLevel: LogLevel;
  /**
   * Address every service's Prometheus `/metrics` endpoint listens on unless
   * its table sets its own (`MetricsListen`, default
   * {@link DEFAULT_METRICS_LISTEN}): an IPv4 or IPv6 address of this host,
   * `0.0.0.0` for every IPv4 address, `::` for every address.
   */
  metricsListen: string;
  connector: ConnectorSettings;
  builder: BuilderSettings;
  signer: SignerSettings;
  uploader: UploaderSettings;
}

/** One problem found in a config file. `line` is 1-based where known. */
export interface ConfigProblem {
  severity: 'error' | 'warning';
  file: string;
  key: string | null;
  line: number | null;
  message: string;
}

/** `spark.toml:3: MaxJobs: must be at least 1, got 0`. */
export function formatProblem(problem: ConfigProblem): string {
  const where = problem.line === null ? problem.file : `${problem.file}:${problem.line}`;
  const prefix = problem.severity === 'warning' ? 'warning: ' : '';
  return `${where}: ${prefix}${problem.key ? `${problem.key}: ` : ''}${problem.message}`;
}

/**
 * Thrown when a config file has errors; `problems` lists each (warnings
 * included), `message` all of them. `unreadable` is true when the file itself
 * could not be read (missing, no permission) rather than found wrong.
 */
export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly unreadable = false,
  ) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
  }
}

/** A config loaded without errors, with any warnings (unknown keys) found on the way. */
export interface LoadedConfig {
  config: SparkConfig;
  warnings: ConfigProblem[];
}

/** Machine facts the defaults come from; tests replace them. */
export interface ConfigEnvironment {
  hostname: () => string;
  architectures: () => string[];
  /** systemd's `$LOGS_DIRECTORY` (set by `LogsDirectory=`), where the signer's audit log goes by default. */
  logsDirectory?: () => string | undefined;
}

/** The machine facts of this host and process: its host name, its architecture, `$LOGS_DIRECTORY`. */
export const systemEnvironment: ConfigEnvironment = {
  hostname: () => readHostname(),
  architectures: () => defaultArchitectures(),
  logsDirectory: () => process.env['LOGS_DIRECTORY']?.split(':')[0] || undefined,
};

type Value = unknown;
type Table = Record<string, Value>;

/** Keys spark reads, plus the legacy `DputHost` that old spark configs carry (unused: `archive-info` gives upload targets). */
const TOP_LEVEL_KEYS = [
  'LighthouseServer',
  'AcceptedJobs',
  'MachineOwner',
  'MachineName',
  'GpgKeyID',
  'MaxJobs',
  'WorkspaceRoot',
  'Architectures',
  'DputHost',
  'CurveKeysDir',
  'RedisUrl',
  'QueuePrefix',
  'RedisCredentialsDir',
  'RedisMaxMemory',
  'GpgSecretKeyFile',
  'LogLevel',
  'MetricsListen',
] as const;

/**
 * Default `RedisMaxMemory`: 1 GiB. A worker's Redis holds a few MiB while it
 * works (job records, queue entries, the last 1000 finished reports per
 * report queue, of which status excerpts are at most 64 KiB: under 70 MiB per
 * queue at worst), plus the reports queued while Lighthouse is away (a status
 * excerpt per running job every 15 s, the newer ones superseding the older);
 * 1 GiB keeps a day-long outage of a busy worker, and stops a runaway or
 * flooding sender long before it takes a small build host's memory.
 */
export const DEFAULT_REDIS_MAX_MEMORY = 1024 ** 3;
/** Smallest non-zero `RedisMaxMemory`: below it BullMQ's own keys and scripts would not fit. */
const MIN_REDIS_MAX_MEMORY = 64 * 1024 ** 2;

const SERVICE_KEYS = {
  connector: [
    'ReplyTimeout',
    'PollInterval',
    'ArchiveInfoInterval',
    'StartTimeout',
    'GiveUpRejectedAfter',
    'RejectedCooldown',
    'MetricsPort',
    'MetricsListen',
  ],
  builder: [
    'StatusInterval',
    'MaxBuildTime',
    'IdleOutputTimeout',
    'MaxLogSize',
    'DownloadConnectTimeout',
    'DownloadIdleTimeout',
    'DrainTimeout',
    'Debspawn',
    'MetricsPort',
    'MetricsListen',
    'AllowFileUrls',
    'Suites',
  ],
  signer: ['PassphraseFile', 'AuditLog', 'MetricsPort', 'MetricsListen'],
  uploader: ['ConnectTimeout', 'IdleTimeout', 'GiveUpAfter', 'MetricsPort', 'MetricsListen', 'FileTimeout', 'Attempts'],
} as const;

/** Reads and checks a spark.toml; throws {@link ConfigError} naming file, key and line for every problem. */
export function loadConfig(file: string = DEFAULT_CONFIG_FILE, env: ConfigEnvironment = systemEnvironment): LoadedConfig {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new ConfigError([{ severity: 'error', file, key: null, line: null, message: `cannot read config: ${reason}` }], true);
  }
  return parseConfig(source, file, env);
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

  const service = (name: keyof typeof SERVICE_KEYS): Table => {
    const value = data[name];
    if (value === undefined) return {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      reader.error(null, name, `expected a table [${name}], got ${describeType(value)}`);
      return {};
    }
    reader.checkUnknown(value as Table, name, SERVICE_KEYS[name]);
    return value as Table;
  };
  const connectorTable = service('connector');
  const builderTable = service('builder');
  const signerTable = service('signer');
  const uploaderTable = service('uploader');
  const seconds = (table: Table, section: string, key: string, fallbackMs: number, min = 0.001) => {
    const value = reader.number(table, section, key, { min });
    return value === undefined ? fallbackMs : Math.round(value * 1000);
  };
  const metricsPort = (table: Table, section: string, fallback: number) =>
    reader.integer(table, section, 'MetricsPort', { min: 0, max: 65535 }) ?? fallback;
  const metricsListen = (table: Table, section: string) => reader.address(table, section, 'MetricsListen') ?? globalMetricsListen;

  const connector: ConnectorSettings = {
    replyTimeoutMs: seconds(connectorTable, 'connector', 'ReplyTimeout', LIGHTHOUSE_REPLY_TIMEOUT_MS),
    pollIntervalMs: seconds(connectorTable, 'connector', 'PollInterval', 5_000),
    archiveInfoIntervalMs: seconds(connectorTable, 'connector', 'ArchiveInfoInterval', 300_000),
    startTimeoutMs: seconds(connectorTable, 'connector', 'StartTimeout', 600_000),
    giveUpRejectedAfterMs: seconds(connectorTable, 'connector', 'GiveUpRejectedAfter', 12 * 3600_000),
    rejectedCooldownMs: seconds(connectorTable, 'connector', 'RejectedCooldown', 30_000),
    metricsPort: metricsPort(connectorTable, 'connector', 9621),
    metricsListen: metricsListen(connectorTable, 'connector'),
  };
  const builder: BuilderSettings = {
    statusIntervalMs: seconds(builderTable, 'builder', 'StatusInterval', JOB_STATUS_INTERVAL_MS),
    maxBuildTimeMs: seconds(builderTable, 'builder', 'MaxBuildTime', 24 * 3600_000),
    idleOutputTimeoutMs: seconds(builderTable, 'builder', 'IdleOutputTimeout', 150 * 60_000),
    maxLogBytes: reader.integer(builderTable, 'builder', 'MaxLogSize', { min: 4096, max: Number.MAX_SAFE_INTEGER }) ?? 2 * 1024 ** 3,
    downloadConnectTimeoutMs: seconds(builderTable, 'builder', 'DownloadConnectTimeout', 30_000),
    downloadIdleTimeoutMs: seconds(builderTable, 'builder', 'DownloadIdleTimeout', 120_000),
    drainTimeoutMs: seconds(builderTable, 'builder', 'DrainTimeout', 600_000, 0),
    debspawn: reader.string(builderTable, 'builder', 'Debspawn') ?? 'debspawn',
    metricsPort: metricsPort(builderTable, 'builder', 9631),
    metricsListen: metricsListen(builderTable, 'builder'),
    allowFileUrls: reader.boolean(builderTable, 'builder', 'AllowFileUrls') ?? false,
    suites: reader.stringArray(builderTable, 'builder', 'Suites') ?? [],
  };
  for (const suite of builder.suites) {
    if (!isValidName(SUITE, suite)) reader.error('builder', 'Suites', `${JSON.stringify(suite)} is not a suite name`);
  }
  const signer: SignerSettings = {
    passphraseFile: reader.path(signerTable, 'signer', 'PassphraseFile') ?? null,
    auditLog: reader.path(signerTable, 'signer', 'AuditLog') ?? join(env.logsDirectory?.() ?? join(workspaceRoot, 'audit'), 'signer.log'),
    metricsPort: metricsPort(signerTable, 'signer', 9623),
    metricsListen: metricsListen(signerTable, 'signer'),
  };
  // Deprecated keys of older configs. FileTimeout bounded a whole PUT whatever the file's size, so a
  // large file on a slow link could never finish; its value is read as IdleTimeout, the nearest
  // setting (no progress for that long). Attempts is ignored: uploads are retried until GiveUpAfter.
  const legacyFileTimeoutMs = seconds(uploaderTable, 'uploader', 'FileTimeout', 0);
  if (uploaderTable['FileTimeout'] !== undefined) {
    reader.warning(
      'uploader',
      'FileTimeout',
      uploaderTable['IdleTimeout'] === undefined
        ? 'deprecated: it bounded the whole PUT whatever the file size; read as IdleTimeout (no progress for that long). Rename it to IdleTimeout'
        : 'deprecated and ignored: IdleTimeout is set',
    );
  }
  if (uploaderTable['Attempts'] !== undefined) {
    reader.integer(uploaderTable, 'uploader', 'Attempts', { min: 1, max: 100 });
    reader.warning('uploader', 'Attempts', 'deprecated and ignored: uploads are retried with backoff until GiveUpAfter');
  }
  const uploader: UploaderSettings = {
    connectTimeoutMs: seconds(uploaderTable, 'uploader', 'ConnectTimeout', 30_000),
    idleTimeoutMs: seconds(uploaderTable, 'uploader', 'IdleTimeout', legacyFileTimeoutMs || 120_000),
    giveUpAfterMs: seconds(uploaderTable, 'uploader', 'GiveUpAfter', 6 * 3600_000),
    metricsPort: metricsPort(uploaderTable, 'uploader', 9624),
    metricsListen: metricsListen(uploaderTable, 'uploader'),
  };

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
    logLevel: isLogLevel(logLevel) ? logLevel : 'info',
    metricsListen: globalMetricsListen,
    connector,
    builder,
    signer,
    uploader,
  };
  return { config, warnings: problems };
}

function describeType(value: Value): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (value instanceof Date) return 'a date';
  if (typeof value === 'object') return 'a table';
  if (typeof value === 'number' && Number.isInteger(value)) return `the integer ${value}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number') return `the float ${value}`;
  return `the ${typeof value} ${JSON.stringify(value)}`;
}

/** Typed reads of a parsed TOML table that record a problem (with its line) instead of throwing. */
class TableReader {
  private readonly lines: string[];

  constructor(
    source: string,
    private readonly file: string,
    private readonly problems: ConfigProblem[],
  ) {
    this.lines = source.split('\n');
  }

  error(section: string | null, key: string, message: string): void {
    this.problems.push({ severity: 'error', file: this.file, key: qualified(section, key), line: this.lineOf(section, key), message });
  }

  warning(section: string | null, key: string, message: string): void {
    this.problems.push({ severity: 'warning', file: this.file, key: qualified(section, key), line: this.lineOf(section, key), message });
  }

  checkUnknown(table: Table, section: string | null, known: readonly string[]): void {
    for (const key of Object.keys(table)) {
      if (known.includes(key)) continue;
      const suggestion = nearestName(key, known);
      this.warning(section, key, `unknown key, ignored${suggestion ? ` (did you mean ${qualified(section, suggestion)}?)` : ''}`);
    }
  }

  string(table: Table, section: string | null, key: string, opts: { required?: boolean } = {}): string | undefined {
    const value = table[key];
    if (value === undefined) {
      if (opts.required) this.missing(section, key);
      return undefined;
    }
    if (typeof value !== 'string') {
      this.error(section, key, `expected a string, got ${describeType(value)}`);
      return undefined;
    }
    if (opts.required && value.trim() === '') {
      this.error(section, key, 'must not be empty');
      return undefined;
    }
    return value;
  }

  path(table: Table, section: string | null, key: string): string | undefined {
    const value = this.string(table, section, key);
    if (value !== undefined && !value.startsWith('/')) {
      this.error(section, key, `expected an absolute path, got ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  stringArray(
    table: Table,
    section: string | null,
    key: string,
    opts: { required?: boolean; nonEmpty?: boolean } = {},
  ): string[] | undefined {
    const value = table[key];
    if (value === undefined) {
      if (opts.required) this.missing(section, key);
      return undefined;
    }
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
      this.error(section, key, `expected an array of strings, got ${describeType(value)}`);
      return undefined;
    }
    if (opts.nonEmpty && value.length === 0) {
      this.error(section, key, 'must list at least one entry');
      return undefined;
    }
    return value as string[];
  }

  /** An IP address to listen on, as Node's `net.isIP` accepts it (IPv6 without brackets, an optional `%zone`). */
  address(table: Table, section: string | null, key: string): string | undefined {
    const value = this.string(table, section, key);
    if (value === undefined || isIP(value) !== 0) return value;
    const unbracketed = /^\[(.*)\]$/.exec(value)?.[1];
    let hint = '';
    if (unbracketed !== undefined && isIP(unbracketed) === 6)
      hint = `; write an IPv6 address without brackets: ${JSON.stringify(unbracketed)}`;
    // A name would be resolved at each start, to whichever address it then has: the address itself is what gets bound.
    else if (/^[A-Za-z0-9.-]*[A-Za-z][A-Za-z0-9.-]*$/.test(value)) hint = '; a host name is not accepted, write the address it stands for';
    this.error(
      section,
      key,
      `expected an IPv4 or IPv6 address to listen on, like "127.0.0.1" (this host only), "192.0.2.10" (one interface), "0.0.0.0" (every IPv4 address) or "::" (every address), got ${JSON.stringify(value)}${hint}`,
    );
    return undefined;
  }

  boolean(table: Table, section: string | null, key: string): boolean | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') {
      this.error(section, key, `expected true or false, got ${describeType(value)}`);
      return undefined;
    }
    return value;
  }

  integer(table: Table, section: string | null, key: string, range: { min: number; max: number }): number | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      this.error(section, key, `expected an integer, got ${describeType(value)}`);
      return undefined;
    }
    if (value < range.min || value > range.max) {
      this.error(section, key, `must be between ${range.min} and ${range.max}, got ${value}`);
      return undefined;
    }
    return value;
  }

  number(table: Table, section: string | null, key: string, range: { min: number }): number | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.error(section, key, `expected a number of seconds, got ${describeType(value)}`);
      return undefined;
    }
    if (value < range.min) {
      this.error(section, key, `must be at least ${range.min}, got ${value}`);
      return undefined;
    }
    return value;
  }

  private missing(section: string | null, key: string): void {
    this.problems.push({
      severity: 'error',
      file: this.file,
      key: qualified(section, key),
      line: null,
      message: 'required key is missing',
    });
  }

  /** Line of `key = …` in `[section]` (or before any table for top-level keys), when written plainly. */
  private lineOf(section: string | null, key: string): number | null {
    let current: string | null = null;
    const keyPattern = new RegExp(`^\\s*(?:${escapeRegExp(key)}|"${escapeRegExp(key)}"|'${escapeRegExp(key)}')\\s*=`);
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[i] as string;
      const header = /^\s*\[\s*([^\]]+?)\s*\]/.exec(line);
      if (header) {
        current = header[1] as string;
        continue;
      }
      if (current === section && keyPattern.test(line)) return i + 1;
    }
    if (section === null) {
      const tableLine = this.lines.findIndex((line) => new RegExp(`^\\s*\\[\\s*${escapeRegExp(key)}\\s*\\]`).test(line));
      if (tableLine !== -1) return tableLine + 1;
    }
    return null;
  }
}

function qualified(section: string | null, key: string): string {
  return section === null ? key : `${section}.${key}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
