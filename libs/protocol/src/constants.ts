/*
 * The protocol's plain constants, in a module without zod: @spark/config and
 * `spark run`'s supervisor import them through `@spark/protocol/constants`
 * and load no schema code (docs/benchmarks.md, "Idle memory").
 */

/** Seconds spark waits for a Lighthouse reply before it gives the request up (spark/connection.py). */
export const LIGHTHOUSE_REPLY_TIMEOUT_MS = 15_000;

/** Interval in ms at which spark sends the log gathered since the last `job-status` (spark/joblog.py). */
export const JOB_STATUS_INTERVAL_MS = 15_000;

/** UUIDv5 namespace spark derives `machine_id` from (spark/config.py `_make_client_uuid`). */
export const MACHINE_ID_NAMESPACE = 'd44a99a2-0b5d-415b-808a-790ad4684309';

/** The job kinds Laniakea hands out to spark workers. */
export const JOB_KINDS = ['package-build', 'os-image-build'] as const;

/** Default BullMQ key prefix; tests use a random one so they never share keys. */
export const DEFAULT_QUEUE_PREFIX = 'spark';

/**
 * How the build helper's line starts when it refuses a build for what the
 * build itself holds — a symbolic link, device, FIFO or socket among its
 * output, a recipe linking out of its checkout: the rest of the line is the
 * reason, which the builder makes the job's failure reason (apps/build-helper:
 * run-helper.ts and sandbox/python/sitecustomize.py).
 */
export const BUILD_REFUSED = 'spark-build-helper: refused build: ';
