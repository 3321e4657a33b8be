import { z } from 'zod';
import { archiveInfoReplySchema, JOB_KINDS } from './lighthouse.js';
import { architectureSchema, fileNameSchema, sha256Schema, uuidSchema } from './debian-names.js';
import { roundKey, roundSchema, type JobRound } from './job-ids.js';
import { REPORT_SENDERS, type QueueName, type ReportSender } from './queues.js';

/*
 * Every Redis key, key pattern and channel spark uses, all under the
 * configured queue prefix (`QueuePrefix`, default `spark`): the BullMQ
 * queues' keys, the plain keys the services share, and the pub/sub channels.
 * Nothing else spells one: the ACL rules (libs/service redis-acl.ts) are built
 * from {@link REDIS_KEY_FAMILIES}, {@link REDIS_CHANNELS} and
 * {@link queueKeysPattern}, so a key renamed here keeps its rule, and a test
 * (libs/protocol test/redis-keys.test.ts) fails when a key fragment is spelled
 * anywhere else, or a key is joined to the prefix by hand (`${prefix}:…`).
 * docs/architecture.md has a row for each, which libs/service
 * test/redis-keys-doc.test.ts checks against this module and the grants.
 */

/** `<prefix>:*`: every key (and channel) of one worker; the connector's and the admin's ACL pattern. */
export function prefixPattern(prefix: string): string {
  return `${prefix}:*`;
}

/**
 * `<prefix>:<queue>:*`: every key BullMQ keeps for one queue (its job hashes,
 * lists, sorted sets, event stream, meta and locks; BullMQ names them
 * `<prefix>:<queue>:<suffix>`). A user granted this pattern can use the queue
 * fully and, since Redis checks every key a Lua script touches, no other.
 */
export function queueKeysPattern(prefix: string, queue: QueueName): string {
  return queueKey(prefix, queue, '*');
}

/**
 * `<prefix>:<queue>:<name>`: one of the keys BullMQ keeps for a queue (`wait`,
 * `meta`, a job's hash under its id …). BullMQ builds these itself (a queue's
 * `toKey`); this is for code that must name one without a queue at hand: the
 * ACL probes of `spark verify` and the tests.
 */
export function queueKey(prefix: string, queue: QueueName, name: string): string {
  return `${prefix}:${queue}:${name}`;
}

/** `<prefix>:archive-targets`: the last `archive-info` reply the connector stored, as JSON. */
export function archiveTargetsKey(prefix: string): string {
  return `${prefix}:archive-targets`;
}

/** What `<prefix>:archive-targets` holds: Lighthouse's reply and when it was received (ms since the epoch). */
export const storedArchiveTargetsSchema = archiveInfoReplySchema.extend({ receivedAt: z.number().int() });
/** The upload targets as the connector stored them. */
export type StoredArchiveTargets = z.infer<typeof storedArchiveTargetsSchema>;

/**
 * `<prefix>:builders`: a hash of builder id → that builder's latest heartbeat
 * (JSON, {@link BuilderHeartbeat}). One hash rather than a key per builder so
 * that readers find every builder with HGETALL: no user may list key names
 * (SCAN). A heartbeat whose `at` is older than {@link BUILDER_HEARTBEAT_TTL_MS}
 * is a builder that is gone.
 */
export function builderHeartbeatsKey(prefix: string): string {
  return `${prefix}:builders`;
}

/** How often a builder refreshes its heartbeat, in ms. */
export const BUILDER_HEARTBEAT_INTERVAL_MS = 2_000;
/** How long a heartbeat counts, in ms: a builder silent this long is gone. */
export const BUILDER_HEARTBEAT_TTL_MS = 10_000;

/** A builder's heartbeat: how many jobs it can run, how many it runs, what it can build. */
export const builderHeartbeatSchema = z.object({
  /** Unique per builder process: `<hostname>:<pid>` or the systemd instance name. */
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9@._:-]+$/),
  slots: z.number().int().nonnegative(),
  busy: z.number().int().nonnegative(),
  kinds: z.array(z.enum(JOB_KINDS)),
  architectures: z.array(architectureSchema),
  /** False while the builder drains before shutdown: it takes no new jobs. */
  accepting: z.boolean(),
  /** ms since the epoch. */
  at: z.number().int(),
});
/** A builder's heartbeat. */
export type BuilderHeartbeat = z.infer<typeof builderHeartbeatSchema>;

/** `<prefix>:lighthouse`: the connector's view of its link to Lighthouse, for `spark status` (JSON). */
export function lighthouseStatusKey(prefix: string): string {
  return `${prefix}:lighthouse`;
}

/** What `<prefix>:lighthouse` holds. Times in ms since the epoch. */
export const lighthouseStatusSchema = z.object({
  /** Endpoint the connector talks to. */
  server: z.string(),
  /** Last reply received from Lighthouse, or null before the first. */
  lastContactAt: z.number().int().nullable(),
  /** Start of the current outage (no reply since), or null while Lighthouse answers. */
  outageSince: z.number().int().nullable(),
  /** Why the last request failed, while in an outage. */
  lastError: z.string().nullable(),
});
/** The connector's view of its link to Lighthouse. */
export type LighthouseStatus = z.infer<typeof lighthouseStatusSchema>;

/**
 * `<prefix>:jobs:<uuid>`: the job as Lighthouse last handed it out to this
 * worker (JSON, {@link JobRecord}), written by the connector alone when it takes
 * the hand-out. Names the job's current round: `spark` commands find a job by
 * its uuid through it, and a later stage can check what it handles against
 * what Lighthouse handed out.
 */
export function jobRecordKey(prefix: string, uuid: string): string {
  return `${prefix}:jobs:${uuid.toLowerCase()}`;
}

/**
 * `<prefix>:signer-rounds:<uuid>`: the latest round of the job the signer has
 * taken, written by the signer alone when it takes the round's sign job (with
 * the job record's lifetime). From then on the builder has handed the round
 * on: the relay no longer takes a rejection of that round from the
 * builder's report queue.
 */
export function signerRoundKey(prefix: string, uuid: string): string {
  return `${prefix}:signer-rounds:${uuid.toLowerCase()}`;
}

/**
 * `<prefix>:upload-progress:<uuid>.<round>`: the uploader's record of one
 * round's upload (a hash; its fields are the uploader's, see apps/uploader
 * upload-progress.ts).
 */
export function uploadProgressKey(prefix: string, round: JobRound): string {
  return `${prefix}:upload-progress:${roundKey(round)}`;
}

/** How long a job record is kept after its last hand-out, in seconds (30 days: past any retry of its upload). */
export const JOB_RECORD_TTL_S = 30 * 24 * 3600;

/** What `<prefix>:jobs:<uuid>` holds. */
export const jobRecordSchema = z.object({
  uuid: uuidSchema,
  /** The current round (see job-ids.ts). */
  round: roundSchema,
  kind: z.string(),
  architecture: architectureSchema,
  repo: z.string(),
  /** Source package, version and suite of a package build; null for other kinds. */
  package: z.string().nullable(),
  version: z.string().nullable(),
  suite: z.string().nullable(),
  /**
   * A package build's `do_indep` (arch-independent packages built too); null for
   * other kinds, absent in records written before it was kept.
   */
  doIndep: z.boolean().nullable().optional(),
  /**
   * A package build's `.dsc`: its file name (from `dsc_url`, see `dscFileName`;
   * null when the URL names none) and the SHA-256 Lighthouse gave for it
   * (`sha256sum`). The signer takes the source's binary packages from the
   * `.dsc` the builder fetched only when it has this digest. Null for other
   * kinds, absent in records written before they were kept.
   */
  dscName: fileNameSchema.nullable().optional(),
  dscSha256: sha256Schema.nullable().optional(),
  /** ms since the epoch at which the connector received the hand-out. */
  receivedAt: z.number().int(),
  /** Rounds of this job this worker rejected back since it last ended here (0 when none). */
  rejections: z.number().int().nonnegative().default(0),
  /** When the first and the latest of those rejections reached Lighthouse (ms), or null. */
  firstRejectedAt: z.number().int().nullable().default(null),
  lastRejectedAt: z.number().int().nullable().default(null),
  /** The latest rejection's reason, and whether only an operator can fix it. */
  lastRejection: z.string().nullable().default(null),
  needsOperator: z.boolean().default(false),
  /** The round whose end (success, failure or rejection) reached Lighthouse, or null while the current one runs. */
  endedRound: roundSchema.nullable().default(null),
  /**
   * The round whose end the relay has begun to send Lighthouse (noted just
   * before it is sent, so also when the relay is killed before the reply): no
   * excerpt of the round is sent after it. Absent until then.
   */
  endingRound: roundSchema.nullable().optional(),
  /**
   * The latest status excerpt of the current round the relay sent Lighthouse
   * (noted just before it is sent): whose report queue it came from and its
   * sequence number there. Lighthouse shows only the latest excerpt, so the
   * relay sends no excerpt that comes before it (see {@link excerptOrder}).
   * Absent until the round's first excerpt.
   */
  shownExcerpt: z
    .object({ round: roundSchema, sender: z.enum(REPORT_SENDERS as [ReportSender, ...ReportSender[]]), seq: z.number().int().positive() })
    .nullable()
    .optional(),
});
/** The job as Lighthouse handed it out to this worker, in its current round. */
export type JobRecord = z.infer<typeof jobRecordSchema>;

/** A status excerpt of a round: the sender whose report queue holds it and its sequence number there. */
export interface ExcerptPosition {
  sender: ReportSender;
  seq: number;
}

/**
 * Compares two excerpts of one round in the order Lighthouse must show them
 * (negative when `a` comes first): a round passes the senders in the order of
 * {@link REPORT_SENDERS}, and each numbers its excerpts of the round upwards,
 * so a later stage's excerpt is newer than any earlier stage's.
 */
export function excerptOrder(a: ExcerptPosition, b: ExcerptPosition): number {
  return REPORT_SENDERS.indexOf(a.sender) - REPORT_SENDERS.indexOf(b.sender) || a.seq - b.seq;
}

/**
 * `<prefix>:blocked-kinds`: a hash of job kind → JSON {@link BlockedKind}: the
 * kinds the connector leaves out of its job requests for a while, because a
 * job of that kind which this worker rejected is first in line at Lighthouse.
 */
export function blockedKindsKey(prefix: string): string {
  return `${prefix}:blocked-kinds`;
}

/** Why and until when a job kind is left out of job requests. */
export const blockedKindSchema = z.object({
  kind: z.string(),
  /** ms since the epoch at which the kind is asked for again. */
  until: z.number().int(),
  /** The job that came back, and why this worker rejected it. */
  uuid: uuidSchema,
  reason: z.string(),
  /** True when only an operator can fix it; such a job is reported failed after `GiveUpRejectedAfter`. */
  needsOperator: z.boolean(),
});
/** A job kind left out of job requests for a while. */
export type BlockedKind = z.infer<typeof blockedKindSchema>;

/** A job record as written: the rejection history may be left out (none yet). */
export type NewJobRecord = z.input<typeof jobRecordSchema>;

/** `<prefix>:connector`: held by the one running connector (`<host>:<pid>`, with a TTL; see the connector's lock). */
export function connectorLockKey(prefix: string): string {
  return `${prefix}:connector`;
}

/**
 * `<prefix>:capacity`: a pub/sub channel on which a builder announces that its
 * capacity grew — it registered, or a slot freed — so the connector asks
 * Lighthouse at once instead of at its next poll.
 */
export function builderCapacityChannel(prefix: string): string {
  return `${prefix}:capacity`;
}

/**
 * `<prefix>:builder-control`: the pub/sub channel builders listen on for
 * operator requests (`spark cancel`; see builder-control.ts).
 */
export function builderControlChannel(prefix: string): string {
  return `${prefix}:builder-control`;
}

/** A family of plain keys: its ACL key pattern, and whether it is one key or many. */
export interface RedisKeyFamily {
  /** The key itself, or a pattern with `*` for the part that varies (an ACL `~` pattern without the `~`). */
  pattern(prefix: string): string;
}

const family = (pattern: (prefix: string) => string): RedisKeyFamily => ({ pattern });

/**
 * Every plain key (not a queue's) the services use, by what it holds: the
 * names the ACL rules grant. A key the code writes must belong to one of
 * these, with its key function above.
 */
export const REDIS_KEY_FAMILIES = {
  archiveTargets: family(archiveTargetsKey),
  builderHeartbeats: family(builderHeartbeatsKey),
  lighthouseStatus: family(lighthouseStatusKey),
  jobRecords: family((prefix) => `${prefix}:jobs:*`),
  signerRounds: family((prefix) => `${prefix}:signer-rounds:*`),
  uploadProgress: family((prefix) => `${prefix}:upload-progress:*`),
  blockedKinds: family(blockedKindsKey),
  connectorLock: family(connectorLockKey),
} as const satisfies Record<string, RedisKeyFamily>;
/** The name of a family of plain keys. */
export type RedisKeyFamilyName = keyof typeof REDIS_KEY_FAMILIES;

/** Every pub/sub channel the services use, by name. */
export const REDIS_CHANNELS = {
  builderControl: builderControlChannel,
  builderCapacity: builderCapacityChannel,
} as const satisfies Record<string, (prefix: string) => string>;
/** The name of a channel. */
export type RedisChannelName = keyof typeof REDIS_CHANNELS;
