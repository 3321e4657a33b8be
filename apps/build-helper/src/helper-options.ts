import type { Caller } from './hand-over.js';
import { RefusedRequest } from './request.js';

/** Settings a root caller may give before the request; under sudo none is accepted. */
export interface HelperOptions {
  configFile?: string;
  stateDir?: string;
  killGraceMs?: number;
  /** Who gets the results: sudo's caller, or `--owner UID:GID` from a root caller. */
  caller: Caller;
  /** Started by sudo (SUDO_UID is set): the caller's parent is watched too. */
  underSudo: boolean;
}

const ROOT_OPTIONS = ['--config', '--state-dir', '--kill-grace-ms', '--owner'];

function ids(text: string, what: string): { uid: number; gid: number } {
  const match = /^([0-9]+):([0-9]+)$/.exec(text);
  if (!match) throw new RefusedRequest(`${what}: ${JSON.stringify(text)} is not UID:GID`);
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

/**
 * Splits the helper's own options (`--config`, `--state-dir`,
 * `--kill-grace-ms`, `--owner`; for tests and root callers) from the request.
 * Under sudo they are refused: the builder must not choose the config that
 * decides what the workspace root is.
 */
export function parseHelperOptions(argv: readonly string[], env: NodeJS.ProcessEnv): { options: HelperOptions; request: string[] } {
  const underSudo = env['SUDO_UID'] !== undefined;
  const sudoCaller = underSudo ? ids(`${env['SUDO_UID'] ?? ''}:${env['SUDO_GID'] ?? ''}`, 'SUDO_UID:SUDO_GID') : null;
  const options: HelperOptions = { caller: sudoCaller && sudoCaller.uid !== 0 ? sudoCaller : null, underSudo };
  let i = 0;
  for (; i < argv.length && ROOT_OPTIONS.includes(argv[i] as string); i += 2) {
    const name = argv[i] as string;
    const value = argv[i + 1];
    if (underSudo) throw new RefusedRequest(`${name} is not accepted through sudo`);
    if (value === undefined) throw new RefusedRequest(`${name} needs a value`);
    if (name === '--config') options.configFile = value;
    else if (name === '--state-dir') options.stateDir = value;
    else if (name === '--owner') options.caller = ids(value, '--owner');
    else options.killGraceMs = Number(value);
  }
  return { options, request: argv.slice(i) };
}
