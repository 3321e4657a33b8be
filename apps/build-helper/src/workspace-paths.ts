import { lstat } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { RefusedRequest } from './request.js';

/** A workspace directory name: the job's uuid, possibly with a round suffix (`<uuid>.<round>`). */
const WORKSPACE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A path the helper checked: the workspace it lies in and its place there. */
export interface WorkspacePath {
  path: string;
  /** `<workspacesDir>/<name>`. */
  workspace: string;
  /** Path below the workspace, `/`-separated. */
  inside: string;
}

/**
 * Checks that `path` lies in one job workspace below `workspacesDir` and that
 * no component of it, from `/` down, is a symbolic link; the last component
 * must be a `kind`. (The builder owns its workspaces and can still swap a
 * component afterwards: the helper therefore reads inputs and writes results
 * with the caller's own rights, see hand-over.ts.)
 */
export async function checkWorkspacePath(
  workspacesDir: string,
  path: string,
  kind: 'file' | 'directory',
  what: string,
): Promise<WorkspacePath> {
  const rel = relative(workspacesDir, path);
  const parts = rel.split(sep);
  if (rel === '' || rel.startsWith('..') || parts.length < 2 || !WORKSPACE_NAME.test(parts[0] as string)) {
    throw new RefusedRequest(`${what}: ${path} is not inside a job workspace below ${workspacesDir}`);
  }
  const components = path.split('/').filter(Boolean);
  let current = '';
  for (const [index, component] of components.entries()) {
    current += `/${component}`;
    const info = await lstat(current).catch(() => null);
    if (!info) throw new RefusedRequest(`${what}: ${current} does not exist`);
    if (info.isSymbolicLink()) throw new RefusedRequest(`${what}: ${current} is a symbolic link; the helper follows none`);
    const last = index === components.length - 1;
    if (!last && !info.isDirectory()) throw new RefusedRequest(`${what}: ${current} is not a directory`);
    if (last && kind === 'file' && !info.isFile()) throw new RefusedRequest(`${what}: ${path} is not a regular file`);
    if (last && kind === 'directory' && !info.isDirectory()) throw new RefusedRequest(`${what}: ${path} is not a directory`);
  }
  return { path, workspace: `${workspacesDir}/${parts[0] as string}`, inside: parts.slice(1).join('/') };
}

/** Refuses paths that lie in different workspaces: a request works on one job. */
export function checkSameWorkspace(paths: readonly WorkspacePath[]): string {
  const first = paths[0];
  if (!first) throw new RefusedRequest('no workspace paths');
  for (const other of paths) {
    if (other.workspace !== first.workspace) {
      throw new RefusedRequest(`${other.path} and ${first.path} lie in different workspaces; a request works on one job`);
    }
  }
  return first.workspace;
}
