import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SparkConfig } from '@spark/config';
import { resolveDebspawn } from '@spark/protocol';
import { ok, problem, skipped, type CheckResult } from './check-result.js';
import type { AccountBook } from './host-accounts.js';

const run = promisify(execFile);

/**
 * The users laniakea-spark ran as: `_lkspark` (its sudoers file,
 * data/sudo/10laniakea-spark) and `lkspark` (Laniakea's worker setup guide,
 * and the rule spark-setup's Ansible puts in /etc/sudoers.d/lkspark).
 */
export const LANIAKEA_SPARK_USERS: readonly string[] = ['lkspark', '_lkspark'];

/** Where laniakea-spark's rules named debspawn: the Debian package's and pip's. */
const DEBSPAWN_PATHS = ['/usr/bin/debspawn', '/usr/local/bin/debspawn'];

/**
 * sudo's files that name one of `words` outside a comment, to say where a
 * rule is. Files in /etc/sudoers.d whose name holds a `.` or ends in `~` are
 * skipped, as sudo skips them.
 */
async function sudoersFilesNaming(words: readonly string[]): Promise<string[]> {
  const dir = '/etc/sudoers.d';
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = ['/etc/sudoers', ...names.filter((name) => !name.includes('.') && !name.endsWith('~')).map((name) => join(dir, name))];
  const pattern = new RegExp(`(^|[^\\w-])(${words.map((word) => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})([^\\w-]|$)`);
  const naming: string[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (text.split('\n').some((line) => !line.trimStart().startsWith('#') && pattern.test(line))) naming.push(file);
  }
  return naming;
}

/**
 * laniakea-spark's sudoers rule lets its user run debspawn as root without a
 * password. Left behind after a migration, it makes whoever can act as that
 * user root (`debspawn login`, `debspawn run --build-dir /`); spark-builder
 * runs only the build helper. Asks sudo (`sudo -n -l -U USER DEBSPAWN`, which
 * only root may ask about another user) for each of `users` that exists and
 * each debspawn on the host.
 */
export async function checkLaniakeaSparkSudo(
  config: SparkConfig,
  users: readonly string[],
  book: AccountBook,
  isRoot: boolean,
): Promise<CheckResult> {
  const check = 'sudo for laniakea-spark';
  const present: string[] = [];
  for (const user of users) if ((await book.uid(user)) !== null) present.push(user);
  if (present.length === 0) return ok(check, `no user ${users.join(' or ')} (laniakea-spark's) on this host`);
  if (!isRoot) return skipped(check, 'not-root', `only root may ask sudo what ${present.join(', ')} may run`);
  const resolved = await resolveDebspawn(config.builder.debspawn);
  const debspawns = [...new Set([...(resolved === null ? [] : [resolved]), ...DEBSPAWN_PATHS])].filter((path) => existsSync(path));
  const allowed: string[] = [];
  for (const user of present) {
    for (const debspawn of debspawns) {
      const answer = await run('sudo', ['-n', '-l', '-U', user, debspawn], { timeout: 30_000 }).then(
        () => true,
        () => false,
      );
      if (answer) allowed.push(`${user} may run ${debspawn}`);
    }
  }
  if (allowed.length === 0) {
    return ok(check, `sudo lets ${present.join(', ')} run no debspawn${debspawns.length > 0 ? ` (${debspawns.join(', ')})` : ''} as root`);
  }
  const files = await sudoersFilesNaming([...present, 'debspawn']);
  return problem(
    check,
    'config',
    `sudo still lets laniakea-spark's user run debspawn as root (${allowed.join('; ')}): whoever can act as that user is root (debspawn login, debspawn run --build-dir /); remove that rule${files.length > 0 ? ` (see ${files.join(', ')})` : ''}, spark-builder needs none of it`,
  );
}
