import { JOB_STATUS_INTERVAL_MS, LIGHTHOUSE_REPLY_TIMEOUT_MS } from '@spark/protocol/constants';
import type { BuilderSettings, ConnectorSettings, SignerSettings, UploaderSettings } from './spark-config.js';

/** Where spark and this project read their configuration by default. */
export const DEFAULT_CONFIG_FILE = '/etc/laniakea/spark.toml';
/** spark's workspace root default (spark/config.py). */
export const DEFAULT_WORKSPACE_ROOT = '/var/lib/lkspark/';
/** Directory of the Curve keys as spark and Laniakea's Ansible setup place them. */
export const DEFAULT_CURVE_KEYS_DIR = '/etc/laniakea/keys/curve';
/** Redis the services share on one host. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/**
 * Address the services' `/metrics` endpoints listen on by default
 * (`MetricsListen`): loopback, so that only this host can scrape them.
 */
export const DEFAULT_METRICS_LISTEN = '127.0.0.1';
/**
 * The name `spark keytool install-signer-key` gives the signer's key as an
 * encrypted systemd credential (`GpgSecretKeyCredential`), unless spark.toml
 * names another.
 */
export const DEFAULT_SIGNER_KEY_CREDENTIAL = 'spark-signer-key';
/**
 * Where `spark keytool install-signer-key` puts that credential, encrypted:
 * systemd's own directory for encrypted credentials (root's alone), which
 * `LoadCredentialEncrypted=` also searches for a credential named without a path.
 */
export const SIGNER_KEY_CREDSTORE = '/etc/credstore.encrypted';

/**
 * Default `RedisMaxMemory`: 1 GiB. A worker's Redis holds a few MiB while it
 * works (job records, queue entries, the last 1000 finished reports per
 * report queue, of which status excerpts are at most 64 KiB: under 70 MiB per
 * queue at worst), plus the reports queued while Lighthouse is away (a status
 * excerpt per running job every 15 s, the newer ones superseding the older);
 * 1 GiB keeps a day-long outage of a busy worker, and stops a runaway or
 * flooding sender long before it takes a small build host's memory.
 */
export const DEFAULT_REDIS_MAX_MEMORY = 1024 ** 3;
/** Smallest non-zero `RedisMaxMemory`: below it BullMQ's own keys and scripts would not fit. */
export const MIN_REDIS_MAX_MEMORY = 64 * 1024 ** 2;

/*
 * Each service table's defaults, for the keys a table leaves out; what each
 * setting does is on its field in spark-config.ts. `MetricsListen` defaults to
 * the top-level one, the builder's `Suites` to none, the signer's
 * `PassphraseFile` to none and its `AuditLog` to a path made from the
 * environment (see SignerSettings.auditLog).
 */

/** `[connector]` defaults: the reply timeout is spark's. */
export const CONNECTOR_DEFAULTS: Readonly<Omit<ConnectorSettings, 'metricsListen'>> = {
  replyTimeoutMs: LIGHTHOUSE_REPLY_TIMEOUT_MS,
  pollIntervalMs: 5_000,
  archiveInfoIntervalMs: 300_000,
  startTimeoutMs: 600_000,
  giveUpRejectedAfterMs: 12 * 3600_000,
  rejectedCooldownMs: 30_000,
  metricsPort: 9621,
};

/** `[builder]` defaults: the status interval is spark's, the idle output timeout sbuild's. */
export const BUILDER_DEFAULTS: Readonly<Omit<BuilderSettings, 'metricsListen' | 'suites'>> = {
  statusIntervalMs: JOB_STATUS_INTERVAL_MS,
  maxBuildTimeMs: 24 * 3600_000,
  idleOutputTimeoutMs: 150 * 60_000,
  maxLogBytes: 2 * 1024 ** 3,
  downloadConnectTimeoutMs: 30_000,
  downloadIdleTimeoutMs: 120_000,
  drainTimeoutMs: 600_000,
  debspawn: 'debspawn',
  metricsPort: 9631,
  allowFileUrls: false,
};

/** `[signer]` defaults. */
export const SIGNER_DEFAULTS: Readonly<Pick<SignerSettings, 'metricsPort'>> = {
  metricsPort: 9623,
};

/** `[uploader]` defaults. */
export const UPLOADER_DEFAULTS: Readonly<Omit<UploaderSettings, 'metricsListen'>> = {
  connectTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  giveUpAfterMs: 6 * 3600_000,
  metricsPort: 9624,
};
