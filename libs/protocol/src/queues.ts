import { z } from 'zod';
import { fileNameSchema, repoNameSchema, sha256Schema, uuidSchema } from './debian-names.js';
import { jobSchema } from './lighthouse.js';
import { roundSchema, type ReportSlot } from './job-ids.js';

/**
 * The BullMQ queues of the pipeline, in the order a job passes them
 * (docs/architecture.md, The pipeline), then the report queues: one per
 * service that reports, so that each service's Redis user writes only its own
 * (see {@link REPORT_QUEUES}).
 */
export const QueueName = {
  build: 'build',
  sign: 'sign',
  upload: 'upload',
  report: 'report',
  builderReport: 'report-builder',
  signerReport: 'report-signer',
  uploaderReport: 'report-uploader',
} as const;
/** One of the pipeline's queues. */
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

/** Every queue name: what `spark status`, the dashboard and the queue-depth metrics show. */
export const QUEUE_NAMES: readonly QueueName[] = Object.values(QueueName);

/** A service that tells Lighthouse about jobs, through a report queue of its own. */
export type ReportSender = 'connector' | 'builder' | 'signer' | 'uploader';

/**
 * The report queue of each sender (docs/architecture.md, "The report relay"). The
 * connector's is `report`, which `spark` commands may also write as the admin
 * user; each stage's Redis user can reach only its own, so no stage can add,
 * change or remove another's reports. The connector relays all four.
 */
export const REPORT_QUEUES = {
  connector: QueueName.report,
  builder: QueueName.builderReport,
  signer: QueueName.signerReport,
  uploader: QueueName.uploaderReport,
} as const satisfies Record<ReportSender, QueueName>;

/**
 * The senders in the order a round passes them. A sender reports about a round
 * only after every earlier one has queued all it has to say about it, so the
 * relay keeps a round's reports in order by sending a report only once no
 * earlier sender's queue holds one not yet sent.
 */
export const REPORT_SENDERS: readonly ReportSender[] = ['connector', 'builder', 'signer', 'uploader'];

/** Every report queue, in relay order. */
export const REPORT_QUEUE_NAMES: readonly QueueName[] = REPORT_SENDERS.map((sender) => REPORT_QUEUES[sender]);

export { DEFAULT_QUEUE_PREFIX } from './constants.js';

/** Payload of the `build` queue: the checked Lighthouse job, its round, and when the connector got it. */
export const buildPayloadSchema = z.object({
  job: jobSchema,
  /** This hand-out of the job (see job-ids.ts). */
  round: roundSchema,
  /** ms since the epoch at which the connector received the job. */
  receivedAt: z.number().int().nonnegative(),
});
/** Payload of a `build` job. */
export type BuildPayload = z.infer<typeof buildPayloadSchema>;

/** Build results as the `.dud` `X-Spark-Result` field names them (laniakea-spark). */
export const BUILD_RESULTS = ['success', 'failure', 'depwait'] as const;
/** The outcome of a build. */
export type BuildResult = (typeof BUILD_RESULTS)[number];

/** One artifact in a manifest: a plain file name inside the job's workspace, its size and SHA-256. */
export const manifestEntrySchema = z.object({
  name: fileNameSchema,
  size: z.number().int().nonnegative(),
  sha256: sha256Schema,
});
/** One artifact in a manifest. */
export type ManifestEntry = z.infer<typeof manifestEntrySchema>;

/**
 * What a build produced, handed from builder to signer and from signer to
 * uploader. Files live in the job's artifacts dir (`jobArtifactsDir`);
 * `changes` and `dud` name the control files among `files`.
 */
export const manifestSchema = z
  .object({
    uuid: uuidSchema,
    round: roundSchema,
    repo: repoNameSchema,
    result: z.enum(BUILD_RESULTS),
    files: z.array(manifestEntrySchema).min(1).max(10_000),
    changes: fileNameSchema.nullable(),
    dud: fileNameSchema,
  })
  .superRefine((manifest, ctx) => {
    const names = new Set<string>();
    for (const entry of manifest.files) {
      if (names.has(entry.name)) {
        ctx.addIssue({ code: 'custom', path: ['files'], message: `${entry.name} is listed twice` });
      }
      names.add(entry.name);
    }
    for (const key of ['changes', 'dud'] as const) {
      const name = manifest[key];
      if (name !== null && !names.has(name)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `${name} is not among the manifest's files` });
      }
    }
  });
/** What a build produced. */
export type Manifest = z.infer<typeof manifestSchema>;

/** Payload of the `sign` queue: the builder's manifest. */
export const signPayloadSchema = z.object({ manifest: manifestSchema });
/** Payload of a `sign` job. */
export type SignPayload = z.infer<typeof signPayloadSchema>;

/** Payload of the `upload` queue: the manifest after signing (sizes and digests of the signed files). */
export const uploadPayloadSchema = z.object({ manifest: manifestSchema });
/** Payload of an `upload` job. */
export type UploadPayload = z.infer<typeof uploadPayloadSchema>;

/** Longest log excerpt in characters that a `job-status` report carries (the tail is kept). */
export const MAX_LOG_EXCERPT_CHARS = 64 * 1024;

/** Longest human-readable reason in a report. */
const reasonSchema = z.string().max(4096);

/**
 * Payload of every report queue ({@link REPORT_QUEUES}): what a service has to
 * tell Lighthouse about a job. The connector relays these as `job-accepted`,
 * `job-status`, `job-rejected`, `job-success`, `job-failed`, in order per job.
 */
export const reportPayloadSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('accepted'), uuid: uuidSchema, round: roundSchema, at: z.number().int() }),
  z.object({
    kind: z.literal('status'),
    uuid: uuidSchema,
    round: roundSchema,
    at: z.number().int(),
    logExcerpt: z.string().max(MAX_LOG_EXCERPT_CHARS + 256),
  }),
  z.object({
    kind: z.literal('rejected'),
    uuid: uuidSchema,
    round: roundSchema,
    at: z.number().int(),
    reason: reasonSchema,
    /** True when only an operator can fix the cause here (no debspawn image for the suite): see job-fetcher's give-up. */
    needsOperator: z.boolean().optional(),
    /** True when the job was handed back without a try: it came back within its back-off after an earlier rejection. */
    bounced: z.boolean().optional(),
  }),
  z.object({ kind: z.literal('success'), uuid: uuidSchema, round: roundSchema, at: z.number().int() }),
  z.object({ kind: z.literal('failed'), uuid: uuidSchema, round: roundSchema, at: z.number().int(), reason: reasonSchema }),
]);
/** Payload of a job in a report queue. */
export type ReportPayload = z.infer<typeof reportPayloadSchema>;
/** The kind of a report. */
export type ReportKind = ReportPayload['kind'];

/** The Lighthouse request each report kind is relayed as. */
export const REPORT_REQUEST = {
  accepted: 'job-accepted',
  status: 'job-status',
  rejected: 'job-rejected',
  success: 'job-success',
  failed: 'job-failed',
} as const satisfies Record<ReportKind, string>;

/**
 * The report kinds each sender sends; the relay drops any other kind from a
 * sender's queue. The builder accepts a round, sends its log and may reject it
 * back; the signer only fails a round (it hands success on to the uploader);
 * the uploader sends excerpts while it retries and ends the round. The
 * connector's queue `report` may hold every kind: its own reports, and on a
 * worker upgraded from a version whose stages all reported through `report`,
 * theirs still waiting there.
 */
export const REPORT_KINDS_OF = {
  connector: ['accepted', 'status', 'rejected', 'success', 'failed'],
  builder: ['accepted', 'status', 'rejected'],
  signer: ['failed'],
  uploader: ['status', 'success', 'failed'],
} as const satisfies Record<ReportSender, readonly ReportKind[]>;

/** Which report slot a report fills: one `accepted`, numbered `status` excerpts, one terminal report per round. */
export function reportSlot(report: ReportPayload, statusSeq = 0): ReportSlot {
  switch (report.kind) {
    case 'accepted':
      return { kind: 'accepted' };
    case 'status':
      return { kind: 'status', seq: statusSeq };
    case 'rejected':
    case 'success':
    case 'failed':
      return { kind: 'final' };
  }
}
