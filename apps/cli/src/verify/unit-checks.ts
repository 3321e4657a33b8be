import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { SparkConfig } from '@spark/config';
import { ok, problem, skipped, type CheckResult } from './check-result.js';

const run = promisify(execFile);

/** sd_booted(3): systemd is the init system when this directory exists. */
export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

/** A property of a unit as `systemctl show -p NAME --value UNIT` prints it; null when systemctl fails. */
async function unitProperty(unit: string, name: string): Promise<string | null> {
  try {
    return (await run('systemctl', ['show', '-p', name, '--value', unit], { timeout: 30_000 })).stdout.trim();
  } catch {
    return null;
  }
}

/**
 * The directory `LogsDirectory=` of spark-signer.service gives the signer
 * (`/var/log/<name>`, its `$LOGS_DIRECTORY`), where its audit log goes
 * unless `[signer] AuditLog` names another file; null without systemd or
 * without that setting (the signer then writes `<WorkspaceRoot>/audit`).
 */
export async function signerLogsDirectory(): Promise<string | null> {
  if (!systemdRunning()) return null;
  const first = (await unitProperty('spark-signer.service', 'LogsDirectory'))?.split(/\s+/)[0];
  return first ? join('/var/log', first) : null;
}

/** Whether `path` is `dir` or below it. */
function within(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** What the units hide from the services (ProtectHome=yes, PrivateTmp=yes): a workspace there is empty to them. */
const HIDDEN_FROM_UNITS = ['/home', '/root', '/run/user', '/tmp', '/var/tmp'];

/**
 * The systemd side, skipped where systemd does not run: `spark.target` is
 * enabled; `WorkspaceRoot` lies where the units let the services see it; and
 * the signer and the uploader, under `ProtectSystem=strict`, may write the
 * workspaces (the signer also its audit log, unless that is in its
 * `LogsDirectory=`, `signerLogs`), which the drop-ins setup-host
 * (deploy/setup-host.sh) writes from spark.toml allow.
 */
export async function checkSystemd(config: SparkConfig, signerLogs: string | null): Promise<CheckResult[]> {
  if (!systemdRunning()) {
    return [skipped('systemd units', 'not-applicable', 'systemd is not running here (run the services with spark run instead)')];
  }
  const results: CheckResult[] = [];
  try {
    const { stdout } = await run('systemctl', ['is-enabled', 'spark.target'], { timeout: 30_000 });
    results.push(ok('systemd units', `spark.target is ${stdout.trim()}`));
  } catch (error) {
    const state = (error as { stdout?: string }).stdout?.trim() || 'not installed';
    results.push(problem('systemd units', 'config', `spark.target is ${state}: run systemctl enable --now spark.target`));
  }
  const hidden = HIDDEN_FROM_UNITS.find((dir) => within(config.workspaceRoot, dir));
  if (hidden !== undefined) {
    results.push(
      problem(
        'WorkspaceRoot',
        'config',
        `${config.workspaceRoot} is below ${hidden}, which the units hide from the services (ProtectHome=yes, PrivateTmp=yes): move it elsewhere (e.g. /srv/lkspark), set WorkspaceRoot, and run dpkg-reconfigure spark-ts`,
      ),
    );
  }
  const auditDir = dirname(config.signer.auditLog);
  const needs: [unit: string, paths: string[]][] = [
    ['spark-signer', [config.workspacesDir, ...(signerLogs !== null && within(auditDir, signerLogs) ? [] : [auditDir])]],
    ['spark-uploader', [config.workspacesDir]],
  ];
  for (const [unit, paths] of needs) {
    const check = `${unit} write access`;
    const allowed = ((await unitProperty(`${unit}.service`, 'ReadWritePaths')) ?? '')
      .split(/\s+/)
      .filter(Boolean)
      // A leading "-" (ignore a missing path) or "+" is not part of the path.
      .map((path) => path.replace(/^[-+]+/, ''));
    const missing = paths.filter((path) => !allowed.some((dir) => within(path, dir)));
    results.push(
      missing.length === 0
        ? ok(check, `may write ${paths.join(', ')}`)
        : problem(
            check,
            'config',
            `may not write ${missing.join(', ')} (ProtectSystem=strict, ReadWritePaths=${allowed.join(' ') || 'none'}): run dpkg-reconfigure spark-ts, which writes /etc/systemd/system/${unit}.service.d/workspace.conf from spark.toml`,
          ),
    );
  }
  return results;
}
