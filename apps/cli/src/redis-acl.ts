import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode } from '@spark/config';
import { REDIS_USERS, redisAclFile, redisPasswordFile, type RedisRoleName } from '@spark/service';
import { usageError, type CliIo } from './commands.js';

const run = promisify(execFile);

/** Where `spark redis-acl` writes the ACL file unless told otherwise (`aclfile` of the worker's Redis, /etc/redis/redis-spark.conf). */
export const DEFAULT_ACL_FILE = '/etc/redis/spark-users.acl';

/** The group whose members may read the operator's Redis password (the Debian package creates it, deploy/debian/sysusers.conf). */
export const OPERATORS_GROUP = 'spark-operators';

/**
 * Who reads each password file: the service's own system user (0400); root for
 * the admin's (0400); root and the members of the `spark-operators` group for
 * the read-only operator's (0440 root:spark-operators), so an operator runs
 * `spark status` and `spark logs` without sudo. The group can read every key
 * under the prefix (the job records, the queues), nothing more.
 */
export const FILE_OWNERS: Record<RedisRoleName, { user: string; group?: string; mode: number }> = {
  connector: { user: 'spark-connector', mode: 0o400 },
  builder: { user: 'spark-builder', mode: 0o400 },
  signer: { user: 'spark-signer', mode: 0o400 },
  uploader: { user: 'spark-uploader', mode: 0o400 },
  operator: { user: 'root', group: OPERATORS_GROUP, mode: 0o440 },
  admin: { user: 'root', mode: 0o400 },
  dashboard: { user: 'root', mode: 0o400 },
};

/** uid and gid of a system user, or null when there is none. */
export async function systemUser(name: string): Promise<{ uid: number; gid: number } | null> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return null;
  }
}

/** gid of a system group, or null when there is none. */
export async function systemGroup(name: string): Promise<number | null> {
  try {
    const { stdout } = await run('getent', ['group', name]);
    const gid = Number(stdout.split(':')[2]);
    return Number.isInteger(gid) ? gid : null;
  } catch {
    return null;
  }
}

/** What {@link writeRedisAcl} did, for the operator. */
export interface RedisAclResult {
  aclFile: string;
  /** Password files created now (the others existed and were kept). */
  created: string[];
  /** Problems that need the operator (a system user that does not exist yet). */
  warnings: string[];
}

/** Options of {@link writeRedisAcl}. */
export interface RedisAclOptions {
  /** `RedisCredentialsDir`. */
  credentialsDir: string;
  aclFile: string;
  /** `QueuePrefix`. */
  prefix: string;
  /** Give each password file to its user (default true; tests run without the users). */
  chown?: boolean;
}

/**
 * Sets up the Redis ACL users (libs/service redis-acl.ts) idempotently: a
 * password per user in `<credentialsDir>/<user>.password` (0400, owned by the
 * service's system user; the admin's by root; the operator's 0440
 * root:spark-operators, see {@link FILE_OWNERS}), created once
 * and kept on later runs; then the ACL file with every user, their password
 * hashes (no password in it) and the default user off, written atomically,
 * readable by root and the `redis` group (0640). Never prints a password.
 */
export async function writeRedisAcl(options: RedisAclOptions): Promise<RedisAclResult> {
  const { credentialsDir, aclFile, prefix } = options;
  const result: RedisAclResult = { aclFile, created: [], warnings: [] };
  await mkdir(credentialsDir, { recursive: true, mode: 0o755 });
  const passwords = {} as Record<RedisRoleName, string>;
  for (const role of Object.keys(REDIS_USERS) as RedisRoleName[]) {
    const file = redisPasswordFile(credentialsDir, role);
    const existing = await readFile(file, 'utf8').catch(() => '');
    if (existing.trim() !== '') {
      passwords[role] = existing.trim();
    } else {
      passwords[role] = randomBytes(32).toString('base64url');
      await rm(file, { force: true });
      const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o400);
      try {
        await handle.writeFile(`${passwords[role]}\n`);
      } finally {
        await handle.close();
      }
      result.created.push(file);
    }
    const wanted = FILE_OWNERS[role];
    await chmod(file, wanted.mode);
    if (options.chown !== false) {
      const owner = await systemUser(wanted.user);
      const group = wanted.group === undefined ? owner?.gid : await systemGroup(wanted.group);
      if (owner && group !== null && group !== undefined) await chown(file, owner.uid, group);
      else {
        // Never leave a file readable by a group it was not meant for: root's alone until the next run.
        await chown(file, 0, 0);
        const missing = owner ? `system group ${wanted.group}` : `system user ${wanted.user}`;
        result.warnings.push(`${missing} does not exist: ${file} stays root's; run again once it exists`);
      }
    }
  }
  await mkdir(dirname(aclFile), { recursive: true, mode: 0o755 });
  const temp = join(dirname(aclFile), `.${process.pid}.spark-acl.tmp`);
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o640);
  try {
    await handle.writeFile(redisAclFile(prefix, passwords));
  } finally {
    await handle.close();
  }
  if (options.chown !== false) {
    const redis = await systemUser('redis');
    if (redis) await chown(temp, 0, redis.gid);
    else result.warnings.push(`system user redis does not exist: ${aclFile} is readable by root only`);
  }
  await rename(temp, aclFile);
  return result;
}

/**
 * `spark redis-acl [--config FILE] [--credentials-dir DIR] [--acl-file FILE]
 * [--prefix P]`: the install step's Redis set-up (see {@link writeRedisAcl}).
 */
export async function runRedisAcl(argv: string[], io: CliIo): Promise<number> {
  let values: {
    config?: string | undefined;
    'credentials-dir'?: string | undefined;
    'acl-file'?: string | undefined;
    prefix?: string | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'credentials-dir': { type: 'string' },
        'acl-file': { type: 'string' },
        prefix: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    return usageError(io, 'redis-acl', (error as Error).message);
  }
  let credentialsDir = values['credentials-dir'];
  let prefix = values.prefix;
  if (credentialsDir === undefined || prefix === undefined) {
    const config = loadConfigOrExitCode(values.config ?? DEFAULT_CONFIG_FILE, io.stderr);
    if (typeof config === 'number') return config;
    credentialsDir ??= config.redisCredentialsDir ?? undefined;
    prefix ??= config.queuePrefix;
  }
  if (credentialsDir === undefined) {
    return usageError(io, 'redis-acl', 'no credentials dir: set RedisCredentialsDir in spark.toml or pass --credentials-dir');
  }
  const result = await writeRedisAcl({ credentialsDir, aclFile: values['acl-file'] ?? DEFAULT_ACL_FILE, prefix });
  for (const warning of result.warnings) io.stderr.write(`spark redis-acl: ${warning}\n`);
  io.stdout.write(
    [
      `wrote ${result.aclFile} (users ${Object.values(REDIS_USERS).join(', ')}; default user off)`,
      result.created.length > 0 ? `new password files: ${result.created.join(', ')}` : `kept the password files in ${credentialsDir}`,
      `Redis reads it with "aclfile ${result.aclFile}" in its config (the worker's own Redis: /etc/redis/redis-spark.conf, which dpkg-reconfigure spark-ts writes):`,
      `restart it (systemctl restart redis-server@spark), or run ACL LOAD if it is configured already;`,
      `then restart the services (they log in with RedisCredentialsDir = '${credentialsDir}').`,
      '',
    ].join('\n'),
  );
  return 0;
}
