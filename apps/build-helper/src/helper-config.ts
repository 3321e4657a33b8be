import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { resolveDebspawn, SECURE_PATH } from '@spark/protocol';
import { RefusedRequest } from './request.js';

/** The configuration spark-builder and the helper share (`/etc/laniakea/spark.toml`). */
export const DEFAULT_CONFIG_FILE = '/etc/laniakea/spark.toml';

/** Where the helper keeps its private copies of a build's inputs and outputs (root only). */
export const DEFAULT_STATE_DIR = '/var/lib/spark-build-helper';

/** What the helper takes from spark.toml. */
export interface HelperConfig {
  /** `WorkspaceRoot` without a trailing slash (default `/var/lib/lkspark`). */
  workspaceRoot: string;
  /** `<WorkspaceRoot>/workspaces`: every path a request names lies in one workspace below it. */
  workspacesDir: string;
  /** `[builder] Debspawn` resolved on sudo's secure_path (`resolveDebspawn` of @spark/protocol) to a root-owned executable. */
  debspawn: string;
}

/** A basic or literal TOML string on one line, as spark.toml writes paths. */
export function tomlString(raw: string, where: string): string {
  const literal = /^'([^']*)'\s*(#.*)?$/.exec(raw);
  if (literal) return literal[1] as string;
  const basic = /^"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(raw);
  if (basic) return JSON.parse(`"${basic[1] as string}"`) as string;
  throw new Error(`${where}: the helper reads only one-line string values`);
}

/**
 * Reads `WorkspaceRoot` and `[builder] Debspawn` from spark.toml with a small
 * line reader (the helper depends on nothing but node and @spark/protocol);
 * `spark config check` is the full parser.
 */
export function parseHelperSettings(text: string, file: string): { workspaceRoot: string; debspawn: string } {
  let table = '';
  let workspaceRoot = '/var/lib/lkspark/';
  let debspawn = 'debspawn';
  text.split('\n').forEach((line, index) => {
    const trimmed = line.trim();
    const header = /^\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$/.exec(trimmed);
    if (header) {
      table = header[1] as string;
      return;
    }
    const pair = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(trimmed);
    if (!pair) return;
    const where = `${file}:${index + 1}: ${pair[1] as string}`;
    if (table === '' && pair[1] === 'WorkspaceRoot') workspaceRoot = tomlString(pair[2] as string, where);
    if (table === 'builder' && pair[1] === 'Debspawn') debspawn = tomlString(pair[2] as string, where);
  });
  return { workspaceRoot, debspawn };
}

/** Refuses a file or directory that a non-root user could have written (it steers what root runs). */
async function checkRootOwned(path: string, what: string): Promise<void> {
  const info = await stat(path).catch(() => null);
  if (!info) throw new RefusedRequest(`${what} ${path} does not exist`);
  if (info.uid !== 0 || (info.mode & 0o022) !== 0) {
    throw new RefusedRequest(`${what} ${path} must be owned by root and not writable by group or others`);
  }
}

/**
 * Loads the helper's settings from `file`, which must be root-owned and not
 * writable by others, like the debspawn it names.
 */
export async function loadHelperConfig(file: string): Promise<HelperConfig> {
  await checkRootOwned(file, 'the configuration');
  const settings = parseHelperSettings(await readFile(file, 'utf8'), file);
  const workspaceRoot = settings.workspaceRoot.replace(/\/+$/, '') || '/';
  if (!isAbsolute(workspaceRoot)) throw new RefusedRequest(`${file}: WorkspaceRoot must be an absolute path`);
  const debspawn = await resolveDebspawn(settings.debspawn);
  if (debspawn === null) {
    throw new RefusedRequest(
      `[builder] Debspawn ${JSON.stringify(settings.debspawn)}: no such executable (names are looked up on ${SECURE_PATH})`,
    );
  }
  await checkRootOwned(debspawn, '[builder] Debspawn');
  return { workspaceRoot, workspacesDir: join(workspaceRoot, 'workspaces'), debspawn };
}
