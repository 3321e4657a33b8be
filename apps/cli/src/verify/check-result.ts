/** What one check of `spark verify` found. */
export type CheckStatus = 'ok' | 'problem' | 'skipped';

/**
 * What kind of problem a check found; it picks the exit code (sysexits(3)):
 * `config` 78 (EX_CONFIG: a setting, an owner, a mode, a password that does
 * not match), `missing` 66 (EX_NOINPUT: a file the worker needs is not there),
 * `unavailable` 69 (EX_UNAVAILABLE: Redis, Lighthouse, the archive or a
 * debspawn image is not there or does not answer).
 */
export type ProblemKind = 'config' | 'missing' | 'unavailable';

/**
 * Why a check was skipped: `not-root` — it needs to read what only root (or
 * the service's user) may, so the worker is not verified; `not-applicable` —
 * it cannot apply here (no systemd) or an earlier problem already covers it.
 */
export type SkipReason = 'not-root' | 'not-applicable';

/** One line of `spark verify`. */
export interface CheckResult {
  /** What was checked, e.g. `Curve secret key`, `Redis user spark-builder`. */
  check: string;
  status: CheckStatus;
  /** ok: what was found; problem: what is wrong and how to fix it; skipped: why. */
  message: string;
  /** Set for a problem. */
  kind?: ProblemKind;
  /** Set for a skipped check. */
  skipped?: SkipReason;
}

/** The exit code of each kind of problem, and of a run that was not root. */
export const VERIFY_EXIT = {
  ok: 0,
  config: 78,
  missing: 66,
  unavailable: 69,
  /** EX_NOPERM: nothing wrong was found, but checks that need root were skipped. */
  notRoot: 77,
} as const;

/**
 * The exit code of a run: the first that applies of 78 (a configuration
 * problem), 66 (a missing file), 69 (something unavailable), 77 (checks
 * skipped for not being root), else 0. A configuration problem comes first
 * because it often causes the others (a wrong key shows as Lighthouse not
 * answering).
 */
export function verifyExitCode(results: readonly CheckResult[]): number {
  const kinds = new Set(results.flatMap((result) => (result.status === 'problem' && result.kind ? [result.kind] : [])));
  if (kinds.has('config')) return VERIFY_EXIT.config;
  if (kinds.has('missing')) return VERIFY_EXIT.missing;
  if (kinds.has('unavailable')) return VERIFY_EXIT.unavailable;
  if (results.some((result) => result.skipped === 'not-root')) return VERIFY_EXIT.notRoot;
  return VERIFY_EXIT.ok;
}

export const ok = (check: string, message: string): CheckResult => ({ check, status: 'ok', message });
export const problem = (check: string, kind: ProblemKind, message: string): CheckResult => ({ check, status: 'problem', kind, message });
export const skipped = (check: string, skippedFor: SkipReason, message: string): CheckResult => ({
  check,
  status: 'skipped',
  skipped: skippedFor,
  message,
});
