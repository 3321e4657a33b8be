import { join } from 'node:path';
import { UUID } from './debian-names.js';

/*
 * Where a job's files live on the host (DESIGN.md: the workspace is
 * `WorkspaceRoot/workspaces/<uuid>/`, the log `WorkspaceRoot/logs/<uuid>.log`).
 * Every function refuses anything but a UUID, since it becomes a path.
 */

function checkedUuid(uuid: string): string {
  if (!UUID.test(uuid)) {
    throw new Error(`refusing job uuid ${JSON.stringify(uuid)} as a path: not a UUID`);
  }
  return uuid.toLowerCase();
}

/** `<workspacesDir>/<uuid>`: everything the job downloads and builds. Removed by the uploader when done. */
export function jobWorkspaceDir(workspacesDir: string, uuid: string): string {
  return join(workspacesDir, checkedUuid(uuid));
}

/**
 * `<workspacesDir>/<uuid>/artifacts`: the files to sign and upload, flat. Every
 * manifest entry's `name` is a file in this directory.
 */
export function jobArtifactsDir(workspacesDir: string, uuid: string): string {
  return join(jobWorkspaceDir(workspacesDir, uuid), 'artifacts');
}

/** `<logsDir>/<uuid>.log`: the job's full build log. Kept after the workspace is removed. */
export function jobLogFile(logsDir: string, uuid: string): string {
  return join(logsDir, `${checkedUuid(uuid)}.log`);
}
