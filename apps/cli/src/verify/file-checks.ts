import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SparkConfig } from '@spark/config';
import { REDIS_USERS, redisPasswordFile, type RedisRoleName } from '@spark/service';
import { FILE_OWNERS } from '../redis-acl.js';
import { ok, problem, skipped, type CheckResult } from './check-result.js';
import type { AccountBook, WorkerAccounts } from './host-accounts.js';

/** What a file or directory of the worker must look like (setup-host, deploy/setup-host.sh, makes it so). */
export interface FileExpectation {
  /** What it is, the check's name: `Curve secret key`. */
  what: string;
  path: string;
  type: 'file' | 'dir';
  /** Account names that may own it (the first is the one setup-host sets). */
  owners: string[];
  /** Group it must have, if any. */
  group?: string;
  /** The mode setup-host sets, named in the fix. */
  mode: number;
  /** Permission bits it may have beyond none (default `mode`): more is a problem. */
  allowed?: number;
  /** Permission bits it must have (default `mode`): fewer is a problem. */
  required?: number;
  /** How to make it when it is missing. */
  create: string;
}

const octal = (mode: number) => `0${mode.toString(8).padStart(3, '0')}`;

/** Checks one file's existence, type, owner, group and mode. */
export async function checkFile(expect: FileExpectation, accounts: AccountBook, isRoot: boolean): Promise<CheckResult> {
  const { what, path } = expect;
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return problem(what, 'missing', `${path}: missing; ${expect.create}`);
    if (code === 'EACCES' && !isRoot) return skipped(what, 'not-root', `${path}: cannot look at it without root`);
    return problem(what, 'config', `${path}: cannot look at it: ${code ?? String(error)}`);
  }
  if (expect.type === 'dir' ? !info.isDirectory() : !info.isFile()) {
    return problem(what, 'config', `${path}: not a ${expect.type === 'dir' ? 'directory' : 'regular file'}`);
  }
  const owner = expect.owners[0] as string;
  const uids: number[] = [];
  for (const name of expect.owners) {
    const uid = await accounts.uid(name);
    if (uid !== null) uids.push(uid);
  }
  if (uids.length === 0)
    return problem(what, 'config', `system user ${owner} does not exist: run dpkg-reconfigure spark-ts, which creates it`);
  const ownerName = await accounts.nameOf('passwd', info.uid);
  const groupName = await accounts.nameOf('group', info.gid);
  const fixOwner = `run: chown ${owner}${expect.group ? `:${expect.group}` : ''} ${path}`;
  if (!uids.includes(info.uid))
    return problem(what, 'config', `${path}: owned by ${ownerName}, should be ${expect.owners.join(' or ')}; ${fixOwner}`);
  if (expect.group !== undefined) {
    const gid = await accounts.gid(expect.group);
    if (gid === null)
      return problem(what, 'config', `system group ${expect.group} does not exist: run dpkg-reconfigure spark-ts, which creates it`);
    if (info.gid !== gid) return problem(what, 'config', `${path}: group ${groupName}, should be ${expect.group}; ${fixOwner}`);
  }
  const mode = info.mode & 0o7777;
  const extra = mode & ~(expect.allowed ?? expect.mode);
  const lacking = (expect.required ?? expect.mode) & ~mode;
  if (extra !== 0 || lacking !== 0) {
    return problem(
      what,
      'config',
      `${path}: mode ${octal(mode)}, should be ${octal(expect.mode)}; run: chmod ${octal(expect.mode)} ${path}`,
    );
  }
  return ok(what, `${path}: ${ownerName}:${groupName} ${octal(mode)}`);
}

/** The role whose system user owns a Redis password file, as {@link FILE_OWNERS} says. */
function passwordOwner(role: RedisRoleName, accounts: WorkerAccounts): { owner: string; group?: string } {
  const wanted = FILE_OWNERS[role];
  const owner = wanted.user === 'root' ? accounts.root : accounts[role as keyof WorkerAccounts];
  return wanted.group === undefined ? { owner } : { owner, group: accounts.operatorsGroup };
}

/**
 * Every file and directory the config names, as setup-host sets them
 * up: spark.toml (root's, readable by the services, writable by nobody else:
 * the build helper trusts it), the Curve keys (the secret one and its
 * directory the connector's alone), the OpenPGP key and passphrase (the
 * signer's alone), the Redis password files, the workspace root's
 * directories and the signer's audit directory.
 */
export function workerFiles(config: SparkConfig, accounts: WorkerAccounts): FileExpectation[] {
  const files: FileExpectation[] = [
    {
      what: 'config',
      path: config.file,
      type: 'file',
      owners: [accounts.root],
      mode: 0o644,
      allowed: 0o644,
      required: 0o444,
      create: 'install it: install -m 0644 spark.toml /etc/laniakea/spark.toml',
    },
    {
      what: 'Curve secret key directory',
      path: dirname(config.curveSecretKeyFile),
      type: 'dir',
      owners: [accounts.connector],
      mode: 0o700,
      create: 'spark keytool install-worker-key makes it (then dpkg-reconfigure spark-ts gives it to spark-connector)',
    },
    {
      what: 'Curve secret key',
      path: config.curveSecretKeyFile,
      type: 'file',
      owners: [accounts.connector],
      mode: 0o600,
      required: 0o400,
      create: "install the worker's key: spark keytool install-worker-key <id>.key_secret, then dpkg-reconfigure spark-ts",
    },
    {
      what: 'Lighthouse server key',
      path: config.lighthouseServerKeyFile,
      type: 'file',
      // Whoever may replace it may put another server in Lighthouse's place.
      owners: [accounts.root, accounts.connector],
      mode: 0o644,
      required: 0o444,
      create: "install Lighthouse's public key: spark keytool install-server-key lighthouse.key",
    },
  ];
  if (config.gpgSecretKeyFile !== null) {
    files.push({
      what: 'OpenPGP secret key',
      path: config.gpgSecretKeyFile,
      type: 'file',
      owners: [accounts.signer],
      mode: 0o600,
      required: 0o400,
      create: 'export it: gpg --export-secret-key -a <GpgKeyID> > FILE, install -m 0600 it there, then dpkg-reconfigure spark-ts',
    });
  }
  if (config.signer.passphraseFile !== null) {
    files.push({
      what: 'OpenPGP passphrase file',
      path: config.signer.passphraseFile,
      type: 'file',
      owners: [accounts.signer],
      mode: 0o600,
      required: 0o400,
      create: 'write the passphrase there (0600, owned by spark-signer), or remove [signer] PassphraseFile',
    });
  }
  if (config.redisCredentialsDir !== null) {
    for (const role of Object.keys(REDIS_USERS) as RedisRoleName[]) {
      const { owner, group } = passwordOwner(role, accounts);
      files.push({
        what: `Redis password of ${REDIS_USERS[role]}`,
        path: redisPasswordFile(config.redisCredentialsDir, role),
        type: 'file',
        owners: [owner],
        ...(group === undefined ? {} : { group }),
        mode: FILE_OWNERS[role].mode,
        create: 'run dpkg-reconfigure spark-ts (spark redis-acl writes it)',
      });
    }
  }
  for (const dir of [config.workspacesDir, config.logsDir]) {
    files.push({
      what: `${dir === config.logsDir ? 'logs' : 'workspaces'} directory`,
      path: dir,
      type: 'dir',
      owners: [accounts.root],
      group: accounts.sharedGroup,
      mode: 0o2770,
      create: 'run dpkg-reconfigure spark-ts, which makes it',
    });
  }
  files.push({
    what: 'audit log directory',
    path: dirname(config.signer.auditLog),
    type: 'dir',
    owners: [accounts.signer],
    mode: 0o700,
    // The unit's LogsDirectoryMode=0700; nobody else may write it either way.
    allowed: 0o755,
    create: `run dpkg-reconfigure spark-ts, which makes it (0700 spark-signer); systemd also does when spark-signer starts, for its LogsDirectory=`,
  });
  return files;
}
