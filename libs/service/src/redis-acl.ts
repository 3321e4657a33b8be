import { createHash } from 'node:crypto';
import {
  prefixPattern,
  QUEUE_NAMES,
  QueueName,
  queueKeysPattern,
  REDIS_CHANNELS,
  REDIS_KEY_FAMILIES,
  REPORT_QUEUES,
  type RedisChannelName,
  type RedisKeyFamilyName,
} from '@spark/protocol';
import { REDIS_USERS, type RedisRoleName } from './redis-auth.js';

/*
 * What each service's Redis user may do (docs/architecture.md, "Trust
 * boundary"). BullMQ keeps a queue in keys `<prefix>:<queue>:…` and changes
 * them in Lua scripts (EVALSHA/EVAL); Redis 7 checks the keys a script is
 * given, and every command the script runs, against the caller's ACL. So a
 * user given `~<prefix>:sign:*` can use the `sign` queue fully and touch no
 * other queue's keys, whatever script it sends. What it cannot be limited to
 * is its own jobs inside a queue it writes: a queue's jobs share its keys. So
 * each service that reports to Lighthouse has a report queue of its own
 * (REPORT_QUEUES), and the connector's relay checks what each may say.
 */

/**
 * Commands that list, count or watch keys and clients whatever the key
 * patterns say: Redis checks no key of them, so a user with any key pattern
 * could learn the job records' uuids, the upload progress keys or who is
 * connected. SCAN, RANDOMKEY and DBSIZE list or count keys; OBJECT and
 * MEMORY report on keys and the server; PUBSUB lists channels and their
 * subscribers; CLIENT lists, tracks (CLIENT TRACKING … BCAST reports every
 * key changed under a prefix) and pauses clients — a connection may only
 * name itself (SETNAME: BullMQ names its worker connections) and ask about
 * itself (ID, INFO, GETNAME). (CLIENT SETINFO, Redis 7.2+, cannot be named
 * in a rule Redis 7.0 loads; connectRedis tells ioredis not to send it.) (KEYS, MONITOR,
 * DEBUG, CLIENT LIST and KILL are already among the dangerous and admin
 * commands.) BullMQ needs none of them: its scripts run no such command, and
 * SCAN only in a queue clean-up no service runs (the heartbeats are one hash,
 * and status-seq.ts reads a report queue's own lists).
 *
 * INFO stays: BullMQ sends a bare INFO on every connection to read the
 * server version and `maxmemory-policy`, and an ACL can allow INFO only for
 * a named section (`+info|server`), never a bare INFO; so a service can still
 * read the key count per database from INFO's `keyspace` section (a count,
 * never a key name).
 */
const NO_LISTING = [
  '-scan',
  '-randomkey',
  '-dbsize',
  '-object',
  '-memory',
  '-pubsub',
  '-client',
  '+client|setname',
  '+client|getname',
  '+client|id',
  '+client|info',
];

/**
 * Commands of the admin (`spark cancel`, `spark retry-upload`; root only):
 * all but the dangerous and admin ones (FLUSHALL, KEYS, CONFIG, ACL, DEBUG,
 * MONITOR, CLIENT KILL …), plus INFO (BullMQ reads the server version) and
 * without the script and function cache management (a user could flush or
 * replace what others run).
 */
const ADMIN_COMMANDS = [
  '+@all',
  '-@dangerous',
  '-@admin',
  '+info',
  '-script|flush',
  '-script|kill',
  '-function|load',
  '-function|delete',
  '-function|flush',
  '-function|restore',
  '-function|kill',
];

/** Commands every service may run: the admin's, less those that list keys or clients ({@link NO_LISTING}). */
const SERVICE_COMMANDS = [...ADMIN_COMMANDS, ...NO_LISTING];

/**
 * Commands of the read-only operator: reads, connection handling, and
 * scripts — which then can only read, since Redis checks each command a
 * script runs against the caller (BullMQ counts jobs with a script). Plus
 * INFO and CLIENT LIST (BullMQ lists a queue's workers with it, for the
 * read-only dashboard). `spark-operators` may read every key under the
 * prefix anyway, so it keeps SCAN.
 */
const READ_ONLY_COMMANDS = [
  '-@all',
  '+@read',
  '+@connection',
  '+evalsha',
  '+eval',
  '+script|load',
  '+script|exists',
  '-@dangerous',
  '+info',
  '+client|list',
];

/** What one Redis user may reach, in the names libs/protocol redis-keys.ts defines. */
export interface RedisGrant {
  /**
   * `read-write`: every key and channel under the prefix; `read`: every key
   * under the prefix, for a user whose commands cannot write; `listed`: only
   * what the lists below name.
   */
  scope: 'read-write' | 'read' | 'listed';
  /** Queues whose keys it may read and write (all of BullMQ's keys of each: {@link queueKeysPattern}). */
  queues: readonly QueueName[];
  /** Families of plain keys it may read and write. */
  keys: readonly RedisKeyFamilyName[];
  /** Families of plain keys it may only read. */
  readKeys: readonly RedisKeyFamilyName[];
  /** Channels it may publish and subscribe to. */
  channels: readonly RedisChannelName[];
}

const listed = (grant: Partial<Omit<RedisGrant, 'scope'>>): RedisGrant => ({
  scope: 'listed',
  queues: [],
  keys: [],
  readKeys: [],
  channels: [],
  ...grant,
});
const everything = (scope: 'read-write' | 'read'): RedisGrant => ({ scope, queues: [], keys: [], readKeys: [], channels: [] });

/**
 * What each user may reach (docs/architecture.md, "Trust boundary"):
 *
 * - connector: every key and channel under the prefix (it writes the job
 *   records, `archive-targets` and `lighthouse`, feeds `build`, relays the
 *   report queues, counts all queues and reads the builders' heartbeats);
 * - builder: the `build` and `sign` queues, its own report queue, the
 *   heartbeats, the builder-control and capacity channels; nothing else (no
 *   job records, no `archive-targets`, no `upload` queue, no other report
 *   queue, no upload progress);
 * - signer: the `sign` and `upload` queues, its own report queue and the
 *   `signer-rounds` marks; reads the job records and `archive-targets`;
 * - uploader: the `upload` queue, its own report queue and the upload progress
 *   records; reads the job records (a round handed out again is not
 *   uploaded: see upload-job.ts) and `archive-targets`;
 * - operator: reads every key under the prefix (`spark status`, `spark logs`,
 *   the read-only dashboard);
 * - admin: every key and channel under the prefix (`spark cancel`,
 *   `spark retry-upload`);
 * - dashboard (`spark dashboard --read-write`): the keys of the queues it
 *   shows, to retry, remove and add jobs; no plain key (job records, upload
 *   targets, progress), no channel, none of the listing commands.
 */
export const REDIS_GRANTS: Readonly<Record<RedisRoleName, RedisGrant>> = {
  connector: everything('read-write'),
  builder: listed({
    queues: [QueueName.build, QueueName.sign, REPORT_QUEUES.builder],
    keys: ['builderHeartbeats'],
    // It announces freed slots on the capacity channel (the connector listens).
    channels: ['builderControl', 'builderCapacity'],
  }),
  signer: listed({
    queues: [QueueName.sign, QueueName.upload, REPORT_QUEUES.signer],
    keys: ['signerRounds'],
    readKeys: ['jobRecords', 'archiveTargets'],
  }),
  uploader: listed({
    queues: [QueueName.upload, REPORT_QUEUES.uploader],
    keys: ['uploadProgress'],
    readKeys: ['jobRecords', 'archiveTargets'],
  }),
  operator: everything('read'),
  admin: everything('read-write'),
  dashboard: listed({ queues: QUEUE_NAMES }),
};

/** The ACL key and channel tokens of a grant: `~pattern`, `%R~pattern` (read only), `&channel`. */
function grantTokens(prefix: string, grant: RedisGrant): string[] {
  switch (grant.scope) {
    case 'read-write':
      return [`~${prefixPattern(prefix)}`, `&${prefixPattern(prefix)}`];
    case 'read':
      // Scripts name their keys without saying they only read them, so Redis asks for full key access
      // to run one; the read-only command set is what keeps such a user from writing.
      return [`~${prefixPattern(prefix)}`];
    case 'listed':
      return [
        ...grant.queues.map((queue) => `~${queueKeysPattern(prefix, queue)}`),
        ...grant.keys.map((name) => `~${REDIS_KEY_FAMILIES[name].pattern(prefix)}`),
        ...grant.readKeys.map((name) => `%R~${REDIS_KEY_FAMILIES[name].pattern(prefix)}`),
        ...grant.channels.map((name) => `&${REDIS_CHANNELS[name](prefix)}`),
      ];
  }
}

/** The commands of each user. */
const COMMANDS_OF: Readonly<Record<RedisRoleName, readonly string[]>> = {
  connector: SERVICE_COMMANDS,
  builder: SERVICE_COMMANDS,
  signer: SERVICE_COMMANDS,
  uploader: SERVICE_COMMANDS,
  operator: READ_ONLY_COMMANDS,
  admin: ADMIN_COMMANDS,
  dashboard: SERVICE_COMMANDS,
};

/**
 * The ACL rules of every user for key prefix `prefix` (`QueuePrefix`), as
 * `ACL SETUSER` / ACL-file tokens without the password: its commands, then
 * the keys and channels of its {@link REDIS_GRANTS} entry.
 */
export function redisAclRules(prefix: string): Record<RedisRoleName, string[]> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(prefix)) throw new Error(`refusing queue prefix ${JSON.stringify(prefix)} in ACL rules`);
  const rules = {} as Record<RedisRoleName, string[]>;
  for (const role of Object.keys(REDIS_USERS) as RedisRoleName[]) {
    rules[role] = [...COMMANDS_OF[role], ...grantTokens(prefix, REDIS_GRANTS[role])];
  }
  return rules;
}

/** Redis's form of a password in an ACL file: `#` and its SHA-256 in hex, so the file holds no secret. */
export function aclPasswordHash(password: string): string {
  return `#${createHash('sha256').update(password, 'utf8').digest('hex')}`;
}

/**
 * The text of a Redis ACL file (`aclfile` in redis.conf) with every spark
 * user, each `on` with its password hash and rules, and the `default` user
 * switched off: a client that does not log in can do nothing.
 */
export function redisAclFile(prefix: string, passwords: Readonly<Record<RedisRoleName, string>>): string {
  const rules = redisAclRules(prefix);
  const lines = ['user default off resetpass resetkeys resetchannels -@all'];
  for (const role of Object.keys(REDIS_USERS) as RedisRoleName[]) {
    lines.push(
      ['user', REDIS_USERS[role], 'on', 'resetpass', aclPasswordHash(passwords[role]), 'resetkeys', 'resetchannels', ...rules[role]].join(
        ' ',
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
