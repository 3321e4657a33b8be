import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode, nodeFlags, type NodeProgram } from '@spark/config';
import { usageError } from '../commands.js';
import { superviseChildren, type ChildSpec } from './supervisor.js';

/** The four services, in pipeline order. */
export const SERVICES = ['connector', 'builder', 'signer', 'uploader'] as const;

/** Which build of the services {@link serviceCommands} starts. */
export interface ServiceCommandOptions {
  /**
   * `installed` (default): each package's `./main` entry as this process
   * resolves it — the built `dist/main.js` in an install, the TypeScript
   * source (through tsx) when this command itself runs from source. `dist`:
   * the built entry whatever this process runs from (benchmarks of the build).
   */
  build?: 'installed' | 'dist';
  /** V8 flags for every service (default: each its own, {@link nodeFlags}). */
  nodeFlags?: readonly string[];
  /** Node's arguments that run a TypeScript source entry (default: the entry through tsx). */
  sourceEntryArgs?: (entry: string) => string[];
}

/**
 * How to start each service from this installation: its package's `./main`
 * entry, resolved by package name — the built `dist/main.js` in an install, the
 * TypeScript source (run through tsx) when this command itself runs from source
 * — with its V8 flags ({@link nodeFlags}).
 */
export function serviceCommands(
  configFile: string,
  services: readonly string[] = SERVICES,
  options: ServiceCommandOptions = {},
): ChildSpec[] {
  return services.map((name) => {
    const flags = options.nodeFlags ?? nodeFlags(name as NodeProgram);
    let entry = fileURLToPath(import.meta.resolve(`@spark/${name}/main`));
    if (options.build === 'dist') entry = join(dirname(dirname(entry)), 'dist', 'main.js');
    const run = !entry.endsWith('.ts')
      ? [entry]
      : (options.sourceEntryArgs?.(entry) ?? ['--conditions=@spark/source', '--import', 'tsx', entry]);
    return { name, command: process.execPath, args: [...flags, ...run, '--config', configFile] };
  });
}

/**
 * How long the supervisor lets the builder stop: its DrainTimeout, then the
 * kill grace of the builds it stops (10 s) and a margin — as the unit's
 * TimeoutStopSec=660s does for the default 600 s.
 */
export function builderStopTimeoutMs(drainTimeoutMs: number): number {
  return drainTimeoutMs + 60_000;
}

/**
 * `spark run [--config FILE]`: the four services as children of one
 * supervisor, for a host that does not want four units. Exits when asked
 * (SIGTERM/SIGINT, forwarded to the children), or with the service's code
 * when one exits with a code a restart cannot fix (64, 66, 78; see
 * EXIT_FATAL_CODES). SIGHUP is forwarded: each service re-reads the config.
 */
export async function runCommand(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }): Promise<number> {
  let configFile: string;
  try {
    const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } }, strict: true });
    configFile = values.config ?? DEFAULT_CONFIG_FILE;
  } catch (error) {
    return usageError(io, 'run', (error as Error).message);
  }
  // The services' own codes for the file they will all read: 66 when it cannot be read, 78 when it does not check.
  const config = loadConfigOrExitCode(configFile, io.stderr);
  if (typeof config === 'number') return config;
  const children = serviceCommands(configFile).map((spec) =>
    spec.name === 'builder' ? { ...spec, stopTimeoutMs: builderStopTimeoutMs(config.builder.drainTimeoutMs) } : spec,
  );
  const supervisor = superviseChildren(children, { out: io.stdout });
  let signals = 0;
  const onSignal = () => {
    // The first signal drains; a second one hurries the children along, but still stops them.
    if (++signals === 1) void supervisor.stop();
    else void supervisor.hurry();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => supervisor.reload());
  return supervisor.done;
}
