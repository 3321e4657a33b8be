import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_FILE, formatProblem, loadConfig, systemEnvironment } from '@spark/config';
import { usageError, type CliIo } from '../commands.js';
import { problem, VERIFY_EXIT, verifyExitCode, type CheckResult } from './check-result.js';
import { signerLogsDirectory } from './unit-checks.js';
import { verifyWorker, type VerifyHost } from './verify-worker.js';

const LABEL = { ok: 'OK  ', problem: 'FAIL', skipped: 'SKIP' } as const;

/** One line per check: `OK   Curve secret key: …`, `FAIL …: what is wrong; what to do`, `SKIP …: skipped: why`. */
export function formatChecks(results: readonly CheckResult[]): string {
  return results
    .map((result) => `${LABEL[result.status]} ${result.check}: ${result.status === 'skipped' ? 'skipped: ' : ''}${result.message}`)
    .join('\n');
}

const MEANING: Record<number, string> = {
  [VERIFY_EXIT.config]: 'a configuration problem',
  [VERIFY_EXIT.missing]: 'a missing file',
  [VERIFY_EXIT.unavailable]: 'something unavailable',
  [VERIFY_EXIT.notRoot]: 'not root: checks were skipped',
};

/**
 * `spark verify [--config FILE] [--json]`: checks everything a worker needs
 * before its first job (see verifyWorker) and prints one line per check, or
 * with `--json` `{ok, exitCode, root, checks}`. Exits 0 when all hold, else
 * 78, 66, 69 or 77 (check-result.ts, verifyExitCode).
 */
export async function verifyCommand(argv: string[], io: CliIo, host: VerifyHost = {}): Promise<number> {
  let values: { config?: string | undefined; json?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true }));
  } catch (error) {
    return usageError(io, 'verify', (error as Error).message);
  }
  const file = values.config ?? DEFAULT_CONFIG_FILE;
  const isRoot = host.isRoot ?? process.getuid?.() === 0;
  let results: CheckResult[];
  try {
    // As the signer sees it: its audit log defaults to the LogsDirectory= of its unit.
    const signerLogs = host.signerLogsDirectory !== undefined ? host.signerLogsDirectory : await signerLogsDirectory();
    const loaded = loadConfig(file, { ...systemEnvironment, logsDirectory: () => signerLogs ?? undefined });
    for (const warning of loaded.warnings) io.stderr.write(`${formatProblem(warning)}\n`);
    results = await verifyWorker(loaded.config, { ...host, isRoot, signerLogsDirectory: signerLogs });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const missing = error.problems.some((p) => p.key === null && /file not found/.test(p.message));
    results = error.problems
      .filter((p) => p.severity === 'error')
      .map((p) => problem('config', missing ? 'missing' : 'config', formatProblem(p)));
  }
  const code = verifyExitCode(results);
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ ok: code === 0, exitCode: code, root: isRoot, checks: results }, null, 2)}\n`);
    return code;
  }
  if (!isRoot)
    io.stdout.write('spark verify: not root: checks of files only root (or their service) may read are skipped; run it as root for all\n');
  io.stdout.write(`${formatChecks(results)}\n`);
  const problems = results.filter((result) => result.status === 'problem').length;
  io.stdout.write(
    code === 0
      ? `spark verify: all ${results.length} checks passed\n`
      : `spark verify: ${problems} problem${problems === 1 ? '' : 's'} (exit ${code}: ${MEANING[code] ?? ''})\n`,
  );
  return code;
}
