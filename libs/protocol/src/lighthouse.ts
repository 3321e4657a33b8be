import { z } from 'zod';
import { JOB_KINDS } from './constants.js';
import {
  architectureSchema,
  isSafeFileName,
  packageNameSchema,
  packageVersionSchema,
  repoNameSchema,
  sha256Schema,
  suiteSchema,
  uuidSchema,
} from './debian-names.js';

export { JOB_KINDS, JOB_STATUS_INTERVAL_MS, LIGHTHOUSE_REPLY_TIMEOUT_MS, MACHINE_ID_NAMESPACE } from './constants.js';

/*
 * The Lighthouse job protocol, as spoken by Laniakea's lighthouse
 * (src/lighthouse/jobs_server.py, jobs_worker.py in lkhq/laniakea) and its
 * worker spark (spark/connection.py, spark/worker.py in lkhq/laniakea-spark).
 * Every request and every reply is one UTF-8 JSON frame on a CurveZMQ REQ socket.
 */

/** A job kind this worker can run. */
export type JobKind = (typeof JOB_KINDS)[number];

/** Fields every request carries: spark identifies itself in each one. */
export const requestIdentitySchema = z.object({
  machine_name: z.string().min(1).max(255),
  machine_id: uuidSchema,
});

/** Every request the worker sends, by its `request` field. */
export const lighthouseRequestSchema = z.discriminatedUnion('request', [
  requestIdentitySchema.extend({ request: z.literal('archive-info') }),
  requestIdentitySchema.extend({
    request: z.literal('job'),
    owner: z.string(),
    accepts: z.array(z.string().min(1)),
    architectures: z.array(architectureSchema),
  }),
  requestIdentitySchema.extend({ request: z.literal('job-accepted'), uuid: uuidSchema }),
  requestIdentitySchema.extend({ request: z.literal('job-rejected'), uuid: uuidSchema }),
  requestIdentitySchema.extend({
    request: z.literal('job-status'),
    uuid: uuidSchema,
    log_excerpt: z.string(),
  }),
  requestIdentitySchema.extend({ request: z.literal('job-success'), uuid: uuidSchema }),
  requestIdentitySchema.extend({ request: z.literal('job-failed'), uuid: uuidSchema }),
]);
/** A request to Lighthouse. */
export type LighthouseRequest = z.infer<typeof lighthouseRequestSchema>;
/** The `request` value of each Lighthouse request. */
export type LighthouseRequestName = LighthouseRequest['request'];

/** `{"error": "…"}`: Lighthouse's way of saying no, to any request. */
export const errorReplySchema = z.object({ error: z.string() });
/** An error reply. */
export type ErrorReply = z.infer<typeof errorReplySchema>;

/** One upload target of `archive-info`: dput-ng's `fqdn` (host, optionally with a path) and `method`. */
export const archiveTargetSchema = z.object({
  upload_fqdn: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:\/[A-Za-z0-9._~/-]*)?$/, 'is not a host[:port][/path]'),
  upload_method: z.enum(['https', 'http']),
});
/** Where and how to upload the artifacts of a repository's jobs. */
export type ArchiveTarget = z.infer<typeof archiveTargetSchema>;

/** Reply to `archive-info`: the upload target of each archive repository. */
export const archiveInfoReplySchema = z.object({
  archive_repos: z.record(repoNameSchema, archiveTargetSchema),
});
/** Reply to `archive-info`. */
export type ArchiveInfo = z.infer<typeof archiveInfoReplySchema>;

/** `data` of a `package-build` job (lighthouse jobs_worker.py `_assign_suitable_job`). */
export const packageBuildDataSchema = z.object({
  package_name: packageNameSchema,
  package_version: packageVersionSchema,
  maintainer: z.string().max(1024).optional().nullable(),
  suite: suiteSchema,
  dsc_url: z
    .string()
    .max(4096)
    .regex(/^(https?|file):\/\/[^\s]+$/, 'is not an http(s) or file URL'),
  sha256sum: sha256Schema,
  do_indep: z.boolean(),
});
/** What a package build needs to know. */
export type PackageBuildData = z.infer<typeof packageBuildDataSchema>;

/** Largest `.dsc` the builder downloads and the signer reads, in bytes: a `.dsc` is a few kB. */
export const MAX_DSC_BYTES = 1024 * 1024;

/**
 * The `.dsc`'s file name in `dsc_url`: its last path segment, URL-decoded, as
 * `dget` saves it. Null when that is no plain file name ending in `.dsc`
 * (such a job cannot be built). The builder saves the `.dsc` under this name,
 * and the signer finds it there by the name the connector recorded.
 */
export function dscFileName(dscUrl: string): string | null {
  let name: string;
  try {
    name = decodeURIComponent(new URL(dscUrl).pathname.split('/').pop() ?? '');
  } catch {
    return null;
  }
  return name.endsWith('.dsc') && isSafeFileName(name) ? name : null;
}

/**
 * A repository address as `git clone` takes it and spark passes it on: a URL
 * (`https://`, `http://`, `git://`, `ssh://`, `git+ssh://`, `ssh+git://`,
 * `file://`, `ftp(s)://`), the scp-like `[user@]host:path`, or a local path.
 * No whitespace, nothing starting with `-` (an option), and no `<transport>::`
 * remote-helper address (git's `ext::` runs commands).
 */
export const GIT_URL =
  /^(?:(?:https?|git|ssh|git\+ssh|ssh\+git|file|ftps?):\/\/\S+|[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:(?!:)\S*|[A-Za-z0-9][A-Za-z0-9.-]*:(?![:/])\S*|\.{0,2}\/\S+)$/;

/** `data` of an `os-image-build` job. */
export const osImageBuildDataSchema = z.object({
  image_format: z.string().regex(/^[a-z0-9-]+$/, 'is not an image format name'),
  git_url: z.string().max(4096).regex(GIT_URL, 'is not a URL git clone takes'),
  distribution: z.string().regex(/^[A-Za-z0-9._-]+$/, 'is not a distribution name'),
  suite: suiteSchema,
  environment: z.string().regex(/^[A-Za-z0-9._+-]+$/, 'is not an environment name'),
  style: z
    .string()
    .regex(/^[A-Za-z0-9._+-]*$/, 'is not a style name')
    .optional()
    .nullable(),
  architecture: architectureSchema,
});
/** What an OS image build needs to know. */
export type OsImageBuildData = z.infer<typeof osImageBuildDataSchema>;

/**
 * A job as Lighthouse hands it out, with its envelope checked and `kind` left open:
 * a job of a kind we do not know must still be rejected back by its uuid.
 */
export const jobEnvelopeSchema = z.object({
  uuid: uuidSchema,
  module: z.string().max(128),
  kind: z.string().min(1).max(128),
  version: z.string().max(128).optional().nullable(),
  architecture: architectureSchema,
  time_created: z.string().max(64).optional().nullable(),
  repo: repoNameSchema.optional().nullable(),
  data: z.record(z.string(), z.unknown()),
});
/** A job envelope before its `data` is checked against its kind. */
export type JobEnvelope = z.infer<typeof jobEnvelopeSchema>;

const jobBase = jobEnvelopeSchema.extend({ repo: repoNameSchema });

/** A fully checked job: its kind is one we run, it names a repository and its `data` fits the kind. */
export const jobSchema = z.discriminatedUnion('kind', [
  jobBase.extend({ kind: z.literal('package-build'), data: packageBuildDataSchema }),
  jobBase.extend({ kind: z.literal('os-image-build'), data: osImageBuildDataSchema }),
]);
/** A job this worker can run. */
export type Job = z.infer<typeof jobSchema>;
/** A package-build job. */
export type PackageBuildJob = Extract<Job, { kind: 'package-build' }>;
/** An OS image build job. */
export type OsImageBuildJob = Extract<Job, { kind: 'os-image-build' }>;

/**
 * The `{error}` Lighthouse answers a report about a job it does not have
 * (lighthouse jobs_worker.py, `_process_job_*_request`). Every other error to a
 * report is taken as passing: Lighthouse wraps a database exception as
 * `Failed to handle request: …`, and our requests never lack a field.
 */
export const UNKNOWN_JOB_ERROR = 'Unable to find job with the requested ID.';

/** Reply to `job-accepted`, `job-rejected`, `job-success`, `job-failed`: `true`, or an error. */
export const ackReplySchema = z.union([z.literal(true), errorReplySchema]);

/** The outcome of reading a reply to `job`. */
export type JobReply =
  | { type: 'none' }
  | { type: 'error'; message: string }
  | { type: 'job'; job: Job }
  | { type: 'invalid'; uuid: string | null; reason: string };

/** Longest reply frame we accept, in bytes: a job is a few hundred bytes; this bounds a hostile server. */
export const MAX_REPLY_BYTES = 1024 * 1024;

/** Joins zod issues into one line: `data.dsc_url: is not an http(s) or file URL; …`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map(String).join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

/** Parses a reply frame as JSON, with a message that says what was wrong with it. */
export function parseReplyFrame(frame: Uint8Array | string): { ok: true; value: unknown } | { ok: false; reason: string } {
  const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength;
  if (size > MAX_REPLY_BYTES) {
    return { ok: false, reason: `reply of ${size} bytes exceeds the ${MAX_REPLY_BYTES}-byte limit` };
  }
  const text = typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8');
  if (size === 0) {
    return { ok: true, value: undefined };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, reason: `reply is not JSON: ${(error as Error).message}` };
  }
}

/**
 * Reads Lighthouse's reply to a `job` request: nothing to do, an error in
 * Lighthouse's words, a job we can run, or an invalid job — with its uuid when
 * the uuid itself is usable, so the caller can reject it back to Lighthouse.
 */
export function readJobReply(value: unknown): JobReply {
  if (value === null || value === undefined) {
    return { type: 'none' };
  }
  const asError = errorReplySchema.safeParse(value);
  if (asError.success) {
    return { type: 'error', message: asError.data.error };
  }
  const rawUuid = typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)['uuid'] : undefined;
  const uuid = uuidSchema.safeParse(rawUuid).success ? (rawUuid as string) : null;
  const envelope = jobEnvelopeSchema.safeParse(value);
  if (!envelope.success) {
    return { type: 'invalid', uuid, reason: `malformed job: ${describeIssues(envelope.error)}` };
  }
  if (!(JOB_KINDS as readonly string[]).includes(envelope.data.kind)) {
    return { type: 'invalid', uuid, reason: `unknown job kind ${JSON.stringify(envelope.data.kind)}` };
  }
  if (!envelope.data.repo) {
    return { type: 'invalid', uuid, reason: 'job names no repository to upload to' };
  }
  const job = jobSchema.safeParse(value);
  if (!job.success) {
    return { type: 'invalid', uuid, reason: `malformed ${envelope.data.kind} job: ${describeIssues(job.error)}` };
  }
  return { type: 'job', job: job.data };
}
