import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { OPERATORS_GROUP, systemGroup, systemUser } from '../redis-acl.js';

const run = promisify(execFile);

/** The system accounts a worker's files belong to (the Debian package creates them, deploy/debian/sysusers.conf). */
export interface WorkerAccounts {
  connector: string;
  builder: string;
  signer: string;
  uploader: string;
  /** Owner of what only root may change: spark.toml, the build helper, the admin's password. */
  root: string;
  /** Group of the services, owning `workspaces/` and `logs/`. */
  sharedGroup: string;
  /** Group whose members read the operator's Redis password (`spark status` without sudo). */
  operatorsGroup: string;
}

/** The accounts of an installed worker. */
export const INSTALLED_ACCOUNTS: WorkerAccounts = {
  connector: 'spark-connector',
  builder: 'spark-builder',
  signer: 'spark-signer',
  uploader: 'spark-uploader',
  root: 'root',
  sharedGroup: 'lkspark',
  operatorsGroup: OPERATORS_GROUP,
};

/** Looks accounts up once per run: names to ids and back. */
export class AccountBook {
  private readonly users = new Map<string, Promise<number | null>>();
  private readonly groups = new Map<string, Promise<number | null>>();
  private readonly names = new Map<string, Promise<string>>();

  /** uid of a user, null when there is none. */
  uid(name: string): Promise<number | null> {
    let found = this.users.get(name);
    if (!found) this.users.set(name, (found = systemUser(name).then((user) => user?.uid ?? null)));
    return found;
  }

  /** gid of a group, null when there is none. */
  gid(name: string): Promise<number | null> {
    let found = this.groups.get(name);
    if (!found) this.groups.set(name, (found = systemGroup(name)));
    return found;
  }

  /** The name of user (`passwd`) or group (`group`) `id`, or the number when it has none. */
  nameOf(database: 'passwd' | 'group', id: number): Promise<string> {
    const key = `${database}:${id}`;
    let found = this.names.get(key);
    if (!found) {
      found = run('getent', [database, String(id)]).then(
        ({ stdout }) => stdout.split(':')[0] || String(id),
        () => String(id),
      );
      this.names.set(key, found);
    }
    return found;
  }
}
