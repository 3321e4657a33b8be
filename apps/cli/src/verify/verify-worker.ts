import type { SparkConfig } from '@spark/config';
import { checkRedis } from './redis-checks.js';
import { type CheckResult } from './check-result.js';
import { checkFile, workerFiles } from './file-checks.js';
import { checkBuildHelper, checkDebspawnImages } from './host-checks.js';
import { AccountBook, INSTALLED_ACCOUNTS, type WorkerAccounts } from './host-accounts.js';
import { checkLaniakeaSparkSudo, LANIAKEA_SPARK_USERS } from './legacy-checks.js';
import { checkArchive, checkLighthouse } from './peer-checks.js';
import { checkSigningKey, type SignerKeyPlaces } from './signer-key-check.js';
import { checkSystemd } from './unit-checks.js';

/** Defined by tools/package when it bundles `spark` for the Debian package, which installs the helper elsewhere. */
declare const SPARK_PACKAGED_BUILD_HELPER: string | undefined;

/**
 * The build helper the sudoers rule names (apps/builder debspawn-command.ts):
 * /usr/sbin/spark-build-helper in the Debian package,
 * /usr/local/sbin/spark-build-helper when `spark` runs from a checkout.
 */
export const BUILD_HELPER =
  typeof SPARK_PACKAGED_BUILD_HELPER === 'string' ? SPARK_PACKAGED_BUILD_HELPER : '/usr/local/sbin/spark-build-helper';

/** Facts of the host `spark verify` checks against; tests point them at their own set-up. */
export interface VerifyHost {
  /** Who owns what (default the accounts the Debian package creates). */
  accounts?: WorkerAccounts;
  /** The build helper's path (default {@link BUILD_HELPER}). */
  buildHelper?: string;
  /** Whether this process is root (default: its uid is 0). */
  isRoot?: boolean;
  /**
   * The signer's `$LOGS_DIRECTORY` (spark-signer.service's `LogsDirectory=`),
   * where its audit log goes by default; null for none. Default: as systemd
   * says (unit-checks.ts, signerLogsDirectory).
   */
  signerLogsDirectory?: string | null;
  /** The users laniakea-spark ran as, whose sudo rule must be gone (default {@link LANIAKEA_SPARK_USERS}). */
  laniakeaSparkUsers?: readonly string[];
  /** Where the signer's key credential and its drop-in are (default the host's: /etc/credstore.encrypted, the unit directories). */
  signerKey?: SignerKeyPlaces;
}

/**
 * Everything a worker needs before its first job, in the order one depends on
 * the other: the files the config names (owners, modes), the signer's key (a file,
 * or an encrypted systemd credential and the drop-in that passes it),
 * Redis and each service's login and rights, Lighthouse (one `archive-info`
 * over CURVE, as the connector asks), the archive's upload locations from that
 * reply, the debspawn images, sudo for the builder and none left for
 * laniakea-spark's user, the systemd units. `config` is the signer's view
 * (loaded with its `$LOGS_DIRECTORY`, {@link VerifyHost.signerLogsDirectory}).
 */
export async function verifyWorker(config: SparkConfig, host: VerifyHost = {}): Promise<CheckResult[]> {
  const accounts = host.accounts ?? INSTALLED_ACCOUNTS;
  const isRoot = host.isRoot ?? process.getuid?.() === 0;
  const book = new AccountBook();
  const results: CheckResult[] = [];
  for (const expectation of workerFiles(config, accounts)) results.push(await checkFile(expectation, book, isRoot));
  results.push(...(await checkSigningKey(config, isRoot, { book, names: accounts }, host.signerKey)));
  results.push(...(await checkRedis(config, isRoot)));
  const curveKeysUnusable = results.some(
    (result) => (result.check === 'Curve secret key' || result.check === 'Lighthouse server key') && result.kind === 'missing',
  );
  if (curveKeysUnusable) {
    results.push({ check: 'Lighthouse', status: 'skipped', skipped: 'not-applicable', message: 'needs the Curve key files (see above)' });
    results.push(...(await checkArchive(config, null)));
  } else if (!isRoot && results.some((result) => result.check === 'Curve secret key' && result.skipped === 'not-root')) {
    results.push({
      check: 'Lighthouse',
      status: 'skipped',
      skipped: 'not-root',
      message: 'the Curve secret key is readable by root and spark-connector only',
    });
    results.push(...(await checkArchive(config, null)));
  } else {
    const lighthouse = await checkLighthouse(config);
    results.push(lighthouse.result, ...(await checkArchive(config, lighthouse.archiveInfo)));
  }
  results.push(...(await checkDebspawnImages(config, isRoot)));
  results.push(...(await checkBuildHelper(config, host.buildHelper ?? BUILD_HELPER, accounts, book, isRoot)));
  results.push(await checkLaniakeaSparkSudo(config, host.laniakeaSparkUsers ?? LANIAKEA_SPARK_USERS, book, isRoot));
  results.push(...(await checkSystemd(config, host.signerLogsDirectory ?? null)));
  return results;
}
