import { createHash } from 'node:crypto';
import { QueueName, REPORT_QUEUES } from '@spark/protocol';
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
 * Commands every service may run: all but the dangerous and admin ones
 * (FLUSHALL, KEYS, CONFIG, ACL, DEBUG, MONITOR, CLIENT KILL …), plus INFO
 * (BullMQ reads the server version) and without the script and function
 * cache management (a user could flush or replace what others run).
 */
const SERVICE_COMMANDS = [
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

/**
 * Commands of the read-only operator: reads, connection handling, and
 * scripts — which then can only read, since Redis checks each command a
 * script runs against the caller (BullMQ counts jobs with a script). Plus
 * INFO and CLIENT LIST (BullMQ lists workers with it).
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

const queueKeys = (prefix: string, queue: string) => `~${prefix}:${queue}:*`;

/**
 * SCAN lists key names whatever the key patterns say (Redis checks no key of
 * it): the job records' uuids, the upload progress keys. Taken from the
 * services that never scan (builder, signer; BullMQ scans only in a queue
 * clean-up they do not run). The connector scans the heartbeats, the uploader
 * its report queue's status excerpts (status-seq.ts).
 */
const NO_SCAN = '-scan';

/**
 * The ACL rules of every user for key prefix `prefix` (`QueuePrefix`), as
 * `ACL SETUSER` / ACL-file tokens without the password:
 *
 * - connector: every key and channel under the prefix (it writes the job
 *   records, `archive-targets` and `lighthouse`, feeds `build`, relays the
 *   report queues, counts all queues and reads the builders' heartbeats);
 * - builder: the `build` and `sign` queues, its own report queue, its heartbeat
 *   keys, the builder-control and capacity channels; nothing else (no job
 *   records, no `archive-targets`, no `upload` queue, no other report queue,
 *   no upload progress, no SCAN);
 * - signer: the `sign` and `upload` queues, its own report queue and the
 *   `signer-rounds` marks; reads the job records and `archive-targets`; no SCAN;
 * - uploader: the `upload` queue, its own report queue and the upload progress
 *   records; reads the job records and `archive-targets`;
 * - operator: reads every key under the prefix (`spark status`, `spark logs`,
 *   the read-only dashboard);
 * - admin: every key and channel under the prefix (`spark cancel`,
 *   `spark retry-upload`, the dashboard with `--read-write`).
 */
export function redisAclRules(prefix: string): Record<RedisRoleName, string[]> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(prefix)) throw new Error(`refusing queue prefix ${JSON.stringify(prefix)} in ACL rules`);
  const p = prefix;
  return {
    connector: [...SERVICE_COMMANDS, `~${p}:*`, `&${p}:*`],
    builder: [
      ...SERVICE_COMMANDS,
      NO_SCAN,
      queueKeys(p, QueueName.build),
      queueKeys(p, QueueName.sign),
      queueKeys(p, REPORT_QUEUES.builder),
      `~${p}:builders:*`,
      `&${p}:builder-control`,
      // It announces freed slots there (the connector listens): see builderCapacityChannel.
      `&${p}:capacity`,
    ],
    signer: [
      ...SERVICE_COMMANDS,
      NO_SCAN,
      queueKeys(p, QueueName.sign),
      queueKeys(p, QueueName.upload),
      queueKeys(p, REPORT_QUEUES.signer),
      `~${p}:signer-rounds:*`,
      `%R~${p}:jobs:*`,
      `%R~${p}:archive-targets`,
    ],
    uploader: [
      ...SERVICE_COMMANDS,
      queueKeys(p, QueueName.upload),
      queueKeys(p, REPORT_QUEUES.uploader),
      `~${p}:upload-progress:*`,
      // A round handed out again is not uploaded: see upload-job.ts.
      `%R~${p}:jobs:*`,
      `%R~${p}:archive-targets`,
    ],
    // Scripts name their keys without saying they only read them, so Redis asks for full key access
    // to run one; the read-only command set is what keeps the operator from writing.
    operator: [...READ_ONLY_COMMANDS, `~${p}:*`],
    admin: [...SERVICE_COMMANDS, `~${p}:*`, `&${p}:*`],
  };
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
