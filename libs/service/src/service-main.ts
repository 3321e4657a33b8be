import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  changedConfigKeys,
  CONFIG_KEYS,
  configValue,
  DEFAULT_CONFIG_FILE,
  EX_CONFIG,
  EX_UNAVAILABLE,
  EX_USAGE,
  formatProblem,
  isLogLevel,
  loadConfig,
  loadConfigOrExitCode,
  LOG_LEVELS,
  setConfigValue,
  type SparkConfig,
} from '@spark/config';
import type { Logger } from 'pino';
import { createLogger, isLogFormat, LOG_FORMATS, setLogLevel } from './logger.js';
import { RedisUnavailable } from './redis.js';
import { exitOnUncaught, type UncaughtReport } from './shutdown.js';

/** What a service tells {@link startService} about itself. */
export interface ServiceProgram {
  /** Service name as in its log lines: `connector`; the command is `spark-<service>`. */
  service: string;
  /** One sentence for `--help`: what the service does. */
  summary: string;
  /** The entry's `import.meta.url`: its package.json gives the version, the checkout around it the commit. */
  entryUrl: string;
  /** Environment variables the service reads besides those every service reads, with what each does. */
  environment?: readonly (readonly [name: string, meaning: string])[];
  /**
   * Settings (paths of CONFIG_KEYS, `connector.pollIntervalMs`) that the service
   * reads from its config object each time it uses them, so that SIGHUP can
   * apply a new value by writing it there. `LogLevel` is always applied.
   */
  liveKeys?: readonly string[];
  /** Command-line arguments (default `process.argv.slice(2)`). */
  argv?: readonly string[];
}

/** A service past its start-up checks. */
export interface StartedService {
  /** The config as loaded; SIGHUP writes the live keys' new values into this same object. */
  config: SparkConfig;
  logger: Logger;
  /** The service's package version, as `--version` prints it (what `spark_build_info` reports). */
  version: string;
  /** Writes `spark-<service>: message` to stderr and exits with `code` (a sysexits code). */
  exit(code: number, message: string): never;
  /** Runs the service's `start()`; Redis not answering at start exits 69 (EX_UNAVAILABLE), any other error 70. */
  run(start: () => Promise<void>): Promise<void>;
  /**
   * Adds `listener` to what each SIGHUP does, after the config file is re-read
   * (the signer reopens its audit log there, for log rotation). Listeners run
   * one after the other, in the order added; a listener that throws is logged
   * as an error and the service runs on.
   */
  onReload(listener: () => Promise<void> | void): void;
}

/** Environment variables every service reads. */
const COMMON_ENVIRONMENT: readonly (readonly [string, string])[] = [
  ['SPARK_LOG_LEVEL', `log level, one of ${LOG_LEVELS.join(', ')}; overrides LogLevel in the config file (default info)`],
  ['SPARK_LOG_FORMAT', `log lines, ${LOG_FORMATS.join(' or ')}; default text when stdout is the journal, json otherwise`],
  ['JOURNAL_STREAM', 'set by systemd: when stdout is the journal, each line carries its priority (<N>) for journalctl -p'],
];

/**
 * The start of every service's `main.ts`, the same for all four: answers
 * `--help` and `--version` (exit 0) before anything is read, checks the
 * command line (64), `SPARK_LOG_LEVEL` and `SPARK_LOG_FORMAT` (78) and the config file (66 when it
 * cannot be read, 78 when it does not parse or check), makes the logger, and
 * makes SIGHUP re-read the config file (see {@link reloadConfig}) and run the
 * service's reload listeners ({@link StartedService.onReload}) instead of
 * ending the process. An uncaught error from here on exits 70.
 */
export function startService(program: ServiceProgram): StartedService {
  const command = `spark-${program.service}`;
  // Until the config is loaded a SIGHUP has nothing to re-read; it must still not end the process.
  let onHangup: () => void = () => undefined;
  process.on('SIGHUP', () => onHangup());
  let logger: Logger | null = null;
  const exit = (code: number, message: string): never => {
    process.stderr.write(`${command}: ${message}\n`);
    process.exit(code);
  };
  const report =
    (level: 'fatal' | 'warn'): UncaughtReport =>
    (error, message) => {
      if (logger) logger[level]({ err: error }, message);
      else process.stderr.write(`${command}: ${message}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    };
  exitOnUncaught(report('fatal'), report('warn'));

  const usage = `usage: ${command} [--config FILE]\n       ${command} --help | --version`;
  let values: { config?: string | undefined; help?: boolean | undefined; version?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: [...(program.argv ?? process.argv.slice(2))],
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    return exit(EX_USAGE, `${(error as Error).message}\n${usage}\nTry '${command} --help' for more.`);
  }
  if (values.help) {
    process.stdout.write(helpText(command, usage, program));
    process.exit(0);
  }
  if (values.version) {
    const version = programVersion(program.entryUrl);
    process.stdout.write(`${command} ${version.version}${version.commit ? ` (commit ${version.commit})` : ''}\n`);
    process.exit(0);
  }

  const envLevel = process.env['SPARK_LOG_LEVEL'];
  if (envLevel !== undefined && !isLogLevel(envLevel)) {
    return exit(EX_CONFIG, `SPARK_LOG_LEVEL=${JSON.stringify(envLevel)} is not a log level; use one of ${LOG_LEVELS.join(', ')}`);
  }
  const envFormat = process.env['SPARK_LOG_FORMAT'];
  if (envFormat !== undefined && !isLogFormat(envFormat)) {
    return exit(EX_CONFIG, `SPARK_LOG_FORMAT=${JSON.stringify(envFormat)} is not a log format; use one of ${LOG_FORMATS.join(', ')}`);
  }
  const configFile = values.config ?? DEFAULT_CONFIG_FILE;
  const config = loadConfigOrExitCode(configFile, process.stderr);
  if (typeof config === 'number') process.exit(config);
  const log = createLogger(program.service, { level: envLevel ?? config.logLevel });
  logger = log;
  const reloadListeners: (() => Promise<void> | void)[] = [];
  // Each SIGHUP's listeners run after the previous SIGHUP's have finished.
  let reloading = Promise.resolve();
  onHangup = () => {
    reloadConfig(config, configFile, log, program.liveKeys ?? []);
    reloading = reloading.then(async () => {
      for (const listener of reloadListeners) {
        try {
          await listener();
        } catch (error) {
          log.error({ err: error }, `SIGHUP: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    });
  };

  return {
    config,
    logger: log,
    version: programVersion(program.entryUrl).version,
    exit,
    async run(start) {
      try {
        await start();
      } catch (error) {
        if (!(error instanceof RedisUnavailable)) throw error;
        log.fatal({ err: error }, `cannot reach Redis at start: ${error.message}; exiting (69)`);
        process.exit(EX_UNAVAILABLE);
      }
    },
    onReload(listener) {
      reloadListeners.push(listener);
    },
  };
}

/**
 * SIGHUP: reads the config file again. A file that no longer loads is logged
 * and the running config kept. Otherwise each changed key that the service
 * applies live (`LogLevel` and `liveKeys`) is written into `running` and
 * logged; the other changed keys are named in one warning, since they apply
 * only when the service restarts. Never throws.
 */
export function reloadConfig(running: SparkConfig, file: string, logger: Logger, liveKeys: readonly string[]): void {
  let next: SparkConfig;
  try {
    const loaded = loadConfig(file);
    for (const warning of loaded.warnings) logger.warn(`reload: ${formatProblem(warning)}`);
    next = loaded.config;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    logger.error(`SIGHUP: ${file} cannot be used; keeping the running configuration: ${reason.replaceAll('\n', '; ')}`);
    return;
  }
  const changed = changedConfigKeys(running, next);
  if (changed.length === 0) {
    logger.info(`SIGHUP: ${file} re-read; nothing changed`);
    return;
  }
  const restartOnly: string[] = [];
  for (const { path, key } of changed) {
    const value = configValue(next, path);
    if (path === 'logLevel') {
      setConfigValue(running, path, value);
      const envLevel = process.env['SPARK_LOG_LEVEL'];
      if (envLevel !== undefined) {
        logger.warn({ key }, `SIGHUP: ${key} is now ${String(value)}, but SPARK_LOG_LEVEL=${envLevel} takes precedence; the level stays`);
      } else {
        // Said at the more verbose of the two levels, so that a move to a quieter level is still logged.
        const announce = () => logger.info({ key, value }, `SIGHUP: applied ${key} = ${String(value)}`);
        if (logger.isLevelEnabled('info')) {
          announce();
          setLogLevel(logger, String(value));
        } else {
          setLogLevel(logger, String(value));
          announce();
        }
      }
    } else if (liveKeys.includes(path)) {
      const before = configValue(running, path);
      setConfigValue(running, path, value);
      logger.info({ key, from: before, to: value }, `SIGHUP: applied ${key}`);
    } else {
      restartOnly.push(key);
    }
  }
  if (restartOnly.length > 0) {
    logger.warn(
      { keys: restartOnly },
      `SIGHUP: changed keys that apply only after a restart (the running service keeps their old values): ${restartOnly.join(', ')}`,
    );
  }
}

/** The package version of the entry and, when it runs from a git checkout whose `.git` it can read, the commit checked out. */
export function programVersion(entryUrl: string): { version: string; commit: string | null } {
  let dir = dirname(fileURLToPath(entryUrl));
  let version = 'unknown';
  let commit: string | null = null;
  for (;;) {
    if (version === 'unknown' && existsSync(join(dir, 'package.json'))) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown };
        if (typeof pkg.version === 'string') version = pkg.version;
      } catch {
        // An unreadable package.json leaves the version unknown; --version still answers.
      }
    }
    if (existsSync(join(dir, '.git'))) {
      commit = gitCommit(join(dir, '.git'));
      break;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return { version, commit };
}

/**
 * The commit `HEAD` names in a `.git` directory (or a worktree's `.git` file
 * pointing to one), read from the files as git writes them: a detached
 * HEAD's hash, a branch's loose ref, or `packed-refs`. Null when unreadable.
 */
function gitCommit(dotGit: string): string | null {
  try {
    let gitDir = dotGit;
    if (statSync(dotGit).isFile()) {
      const target = /^gitdir: (.+)$/m.exec(readFileSync(dotGit, 'utf8'))?.[1]?.trim();
      if (!target) return null;
      gitDir = isAbsolute(target) ? target : resolve(dirname(dotGit), target);
    }
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return head;
    const ref = /^ref: (\S+)$/.exec(head)?.[1];
    if (!ref) return null;
    // A worktree keeps its HEAD but shares refs with the main repository (`commondir`).
    const common = existsSync(join(gitDir, 'commondir')) ? resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim()) : gitDir;
    for (const base of [gitDir, common]) {
      if (existsSync(join(base, ref))) return readFileSync(join(base, ref), 'utf8').trim();
    }
    const packed = readFileSync(join(common, 'packed-refs'), 'utf8');
    return new RegExp(`^([0-9a-f]{40,64}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(packed)?.[1] ?? null;
  } catch {
    return null;
  }
}

function helpText(command: string, usage: string, program: ServiceProgram): string {
  const environment = [...COMMON_ENVIRONMENT, ...(program.environment ?? [])];
  const width = Math.max(...environment.map(([name]) => name.length)) + 2;
  const live = ['LogLevel', ...CONFIG_KEYS.filter(({ path }) => program.liveKeys?.includes(path)).map(({ key }) => key)];
  return `${usage}

${program.summary}

options:
  -c, --config FILE  spark.toml to read (default ${DEFAULT_CONFIG_FILE})
  -h, --help         print this help and exit
  -V, --version      print the version (and the git commit of the checkout it runs from, when known) and exit

signals:
  SIGTERM, SIGINT    stop taking work, finish what is in flight, exit 0; a second one exits at once
  SIGHUP             re-read the config file: apply ${live.join(', ')}; log the other changed keys, which need a restart

environment:
${environment.map(([name, meaning]) => `  ${name.padEnd(width)}${meaning}`).join('\n')}

exit status:
  0   stopped when asked
  64  bad command-line usage
  66  the config file or a key file is missing or unreadable
  69  Redis did not answer at start
  70  an uncaught error (a bug: the log line says which)
  78  the config file or a key file does not parse or check, or SPARK_LOG_LEVEL is not a level
`;
}
