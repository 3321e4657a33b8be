import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { SparkConfig } from '@spark/config';
import { resolveDebspawn, SECURE_PATH } from '@spark/protocol';
import { ok, problem, skipped, type CheckResult } from './check-result.js';
import { checkFile, type FileExpectation } from './file-checks.js';
import type { AccountBook, WorkerAccounts } from './host-accounts.js';

const run = promisify(execFile);

/** One image as `debspawn list` shows it. */
export interface DebspawnImage {
  name: string;
  suite: string;
  architecture: string;
}

/** Reads `debspawn list`: one `[name]` section per image with `Suite = …` and `Architecture = …` lines. */
export function parseDebspawnList(text: string): DebspawnImage[] {
  const images: DebspawnImage[] = [];
  let current: Partial<DebspawnImage> | null = null;
  const flush = () => {
    if (current?.name && current.suite && current.architecture) images.push(current as DebspawnImage);
  };
  for (const line of text.split('\n')) {
    const section = /^\[(.+)\]\s*$/.exec(line);
    if (section) {
      flush();
      current = { name: section[1] as string };
      continue;
    }
    const pair = /^(\w+)\s*=\s*(.*?)\s*$/.exec(line);
    if (!current || !pair) continue;
    if (pair[1] === 'Suite') current.suite = pair[2];
    if (pair[1] === 'Architecture') current.architecture = pair[2];
  }
  flush();
  return images;
}

/**
 * A debspawn image for every suite in `[builder] Suites` and every
 * architecture in `Architectures` (`debspawn list`, the debspawn the build
 * helper runs); without `Suites`, at least one image per architecture.
 */
export async function checkDebspawnImages(config: SparkConfig, isRoot: boolean): Promise<CheckResult[]> {
  const check = 'debspawn images';
  const debspawn = await resolveDebspawn(config.builder.debspawn);
  if (debspawn === null) {
    return [
      problem(
        check,
        'unavailable',
        `[builder] Debspawn ${JSON.stringify(config.builder.debspawn)}: no such executable on ${SECURE_PATH}; install debspawn (apt-get install debspawn)`,
      ),
    ];
  }
  if (!isRoot) return [skipped(check, 'not-root', `${debspawn} list runs as root (as the build helper runs debspawn)`)];
  let listed: string;
  try {
    listed = (await run(debspawn, ['list'], { timeout: 60_000 })).stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    return [problem(check, 'unavailable', `${debspawn} list failed: ${stderr || (error as Error).message}`)];
  }
  const images = parseDebspawnList(listed);
  const results: CheckResult[] = [];
  if (config.builder.suites.length === 0) {
    for (const arch of config.architectures) {
      const found = images.filter((image) => image.architecture === arch).map((image) => image.suite);
      results.push(
        found.length > 0
          ? ok(
              `debspawn images for ${arch}`,
              `${found.join(', ')} (set [builder] Suites to check that the suites this worker builds for are all there)`,
            )
          : problem(
              `debspawn images for ${arch}`,
              'unavailable',
              `none: every ${arch} job would be rejected; run: debspawn create --arch=${arch} <suite>`,
            ),
      );
    }
    return results;
  }
  for (const suite of config.builder.suites) {
    for (const arch of config.architectures) {
      const image = images.find((candidate) => candidate.suite === suite && candidate.architecture === arch);
      results.push(
        image
          ? ok(`debspawn image ${suite}/${arch}`, image.name)
          : problem(
              `debspawn image ${suite}/${arch}`,
              'unavailable',
              `missing: jobs for ${suite} on ${arch} would be rejected ("missing an environment"); run: debspawn create --arch=${arch} ${suite}`,
            ),
      );
    }
  }
  return results;
}

/**
 * The build helper and the debspawn it runs are root's and writable by no one
 * else (the helper refuses to run otherwise), and sudo lets the builder's user
 * run the helper without a password (`sudo -n -l -U <user> <helper>`, which
 * only root may ask about another user).
 */
export async function checkBuildHelper(
  config: SparkConfig,
  helper: string,
  accounts: WorkerAccounts,
  book: AccountBook,
  isRoot: boolean,
): Promise<CheckResult[]> {
  const rootOwned = (what: string, path: string, create: string): FileExpectation => ({
    what,
    path,
    type: 'file',
    owners: [accounts.root],
    mode: 0o755,
    required: 0o500,
    create,
  });
  const results = [
    await checkFile(rootOwned('build helper', helper, 'the spark-ts package installs it: apt install --reinstall spark-ts'), book, isRoot),
  ];
  const debspawn = await resolveDebspawn(config.builder.debspawn);
  if (debspawn !== null) {
    results.push(await checkFile(rootOwned('debspawn executable', debspawn, 'install debspawn'), book, isRoot));
  }
  const check = `sudo for ${accounts.builder}`;
  if (!isRoot) {
    results.push(skipped(check, 'not-root', `only root may ask sudo what ${accounts.builder} may run`));
  } else if ((await book.uid(accounts.builder)) === null) {
    results.push(
      problem(check, 'config', `system user ${accounts.builder} does not exist: run dpkg-reconfigure spark-ts, which creates it`),
    );
  } else {
    try {
      await run('sudo', ['-n', '-l', '-U', accounts.builder, helper], { timeout: 30_000 });
      results.push(ok(check, `may run ${helper} as root without a password`));
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      results.push(
        problem(
          check,
          'config',
          `may not run ${helper} through sudo without a password${stderr ? ` (${stderr})` : ''}: the spark-ts package installs /etc/sudoers.d/10spark-builder (a conffile; restore it with apt install --reinstall -o Dpkg::Options::=--force-confmiss spark-ts)`,
        ),
      );
    }
  }
  return results;
}
