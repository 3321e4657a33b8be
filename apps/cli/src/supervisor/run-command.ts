import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, EXIT_CONFIG } from '@spark/config';
import { loadCliConfig } from '../cli-config.js';
import { usageError } from '../commands.js';
import { superviseChildren, type ChildSpec } from './supervisor.js';

/** The four services, in pipeline order. */
export const SERVICES = ['connector', 'builder', 'signer', 'uploader'] as const;

/**
 * How to start each service from this installation: its package's `./main`
 * entry, resolved by package name — the built `dist/main.js` in an install, the
 * TypeScript source (run through tsx) when this command itself runs from source.
 */
export function serviceCommands(configFile: string, services: readonly string[] = SERVICES): ChildSpec[] {
  return services.map((name) => {
    const entry = fileURLToPath(import.meta.resolve(`@spark/${name}/main`));
    const loader = entry.endsWith('.ts') ? ['--conditions=@spark/source', '--import', 'tsx'] : [];
    return { name, command: process.execPath, args: [...loader, entry, '--config', configFile] };
  });
}

/**
 * `spark run [--config FILE]`: the four services as children of one
 * supervisor, for a host that does not want four units. Exits when asked
 * (SIGTERM/SIGINT, forwarded to the children), or with 2 when a service finds
 * the config unusable.
 */
export async function runCommand(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }): Promise<number> {
  let configFile: string;
  try {
    const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } }, strict: true });
    configFile = values.config ?? DEFAULT_CONFIG_FILE;
  } catch (error) {
    return usageError(io, 'run', (error as Error).message);
  }
  if (!loadCliConfig(configFile, io.stderr)) return EXIT_CONFIG;
  const supervisor = superviseChildren(serviceCommands(configFile), { out: io.stdout });
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(1);
    void supervisor.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return supervisor.done;
}
