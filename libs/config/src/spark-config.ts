import type { LogLevel } from './log-level.js';

/** Settings of the connector (`[connector]` table). Durations in seconds in the file, ms here. */
export interface ConnectorSettings {
  /** ms to wait for a Lighthouse reply before retrying on a fresh socket (`ReplyTimeout`, default 15 s as spark). */
  replyTimeoutMs: number;
  /** ms between job requests while idle (`PollInterval`, default 5 s). */
  pollIntervalMs: number;
  /** ms between `archive-info` refreshes (`ArchiveInfoInterval`, default 300 s). */
  archiveInfoIntervalMs: number;
  /** ms a fetched job may wait for a builder before it is rejected back (`StartTimeout`, default 600 s). */
  startTimeoutMs: number;
  /**
   * ms after its first rejection here at which a job that keeps coming back for a
   * reason only an operator can fix (no debspawn image for its suite) is reported
   * failed instead of rejected again (`GiveUpRejectedAfter`, default 12 h).
   */
  giveUpRejectedAfterMs: number;
  /**
   * First cool-down in ms of a job this worker rejected: handed out again sooner, it goes straight
   * back and its kind is left out of requests meanwhile; doubled per rejection up to 30 min
   * (`RejectedCooldown`, default 30 s).
   */
  rejectedCooldownMs: number;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9621; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** Settings of the builder (`[builder]` table). */
export interface BuilderSettings {
  /** ms between log excerpts sent to Lighthouse (`StatusInterval`, default 15 s as spark). */
  statusIntervalMs: number;
  /** Hard time limit of one job in ms (`MaxBuildTime`, default 24 h). */
  maxBuildTimeMs: number;
  /** ms without a line of output before a build is killed (`IdleOutputTimeout`, default 150 min as sbuild). */
  idleOutputTimeoutMs: number;
  /** Bytes of build output a job's log may hold; a build that writes more is stopped and fails (`MaxLogSize`, default 2 GiB). */
  maxLogBytes: number;
  /** ms to connect to the archive a source package comes from (`DownloadConnectTimeout`, default 30 s). */
  downloadConnectTimeoutMs: number;
  /** ms a download may go without receiving a byte before it fails and the job is rejected back (`DownloadIdleTimeout`, default 120 s). */
  downloadIdleTimeoutMs: number;
  /** ms to let running jobs finish on shutdown before they are killed and rejected (`DrainTimeout`, default 600 s). */
  drainTimeoutMs: number;
  /** `debspawn` executable (`Debspawn`, default `debspawn` from PATH). */
  debspawn: string;
  /** Base port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9631): `spark-builder@N` serves on base + N − 1, so builder instances never take the connector's, signer's or uploader's 9621/9623/9624; 0 turns it off. */
  metricsPort: number;
  /** Address every builder instance's `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
  /**
   * Development only: accept `file://` source URLs in jobs (`AllowFileUrls`,
   * default false). Never set on a production worker: a job could make the
   * builder read any file it can read.
   */
  allowFileUrls: boolean;
  /**
   * Suites this worker builds for (`Suites`, default none). Nothing at run time
   * reads it: `spark verify` checks that debspawn has an image for each, for
   * every architecture in `Architectures`.
   */
  suites: string[];
}

/** Settings of the signer (`[signer]` table). */
export interface SignerSettings {
  /** File holding the secret key's passphrase (`PassphraseFile`), or null for an unprotected key. */
  passphraseFile: string | null;
  /**
   * Append-only log of every signature and refusal (`AuditLog`; default
   * `$LOGS_DIRECTORY/signer.log` when systemd's `LogsDirectory=` sets it —
   * `/var/log/spark-signer/signer.log` in spark-signer.service — else
   * `<WorkspaceRoot>/audit/signer.log`). Its directory must be the signer's alone.
   */
  auditLog: string;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9623; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** Settings of the uploader (`[uploader]` table). */
export interface UploaderSettings {
  /** ms to wait for a connection to the archive (TCP and TLS handshake) before the try fails (`ConnectTimeout`, default 30 s). */
  connectTimeoutMs: number;
  /**
   * ms without progress (no byte of the file taken by the connection, no byte of the answer) before a PUT is cut
   * (`IdleTimeout`, default 120 s). A slow but steady upload is never cut, whatever its size. The deprecated
   * `FileTimeout` (it bounded the whole PUT) is read as this when `IdleTimeout` is not set.
   */
  idleTimeoutMs: number;
  /**
   * ms after a round's first upload try at which an upload still failing is given up and the job reported failed
   * to Lighthouse with the reason (`GiveUpAfter`, default 6 h). Until then it is retried with backoff.
   */
  giveUpAfterMs: number;
  /** Local port of the Prometheus `/metrics` endpoint (`MetricsPort`, default 9624; 0 turns it off). */
  metricsPort: number;
  /** Address the `/metrics` endpoint listens on (`MetricsListen`, default the top-level `MetricsListen`). */
  metricsListen: string;
}

/** The effective worker configuration: spark's keys with spark's defaults, plus this project's. */
export interface SparkConfig {
  /** The file it was read from. */
  file: string;
  /** ZeroMQ endpoint of Lighthouse, e.g. `tcp://master.example.org:5570` (`LighthouseServer`, required). */
  lighthouseServer: string;
  /** Job kinds this worker takes (`AcceptedJobs`, required, non-empty). */
  acceptedJobs: string[];
  /** Owner sent with job requests (`MachineOwner`, default empty). */
  machineOwner: string;
  /** Name Lighthouse knows the worker by (`MachineName`, default `/etc/hostname` trimmed). */
  machineName: string;
  /** UUIDv5 of `machineName` in spark's namespace: the worker's identity at Lighthouse. */
  machineId: string;
  /** OpenPGP key (fingerprint or key id) the signer signs with (`GpgKeyID`, required). */
  gpgKeyId: string;
  /** Concurrent jobs per builder (`MaxJobs`, default 1, at least 1). */
  maxJobs: number;
  /** Root of workspaces and logs (`WorkspaceRoot`, default `/var/lib/lkspark/`). */
  workspaceRoot: string;
  /** `<WorkspaceRoot>/workspaces`: one directory per job uuid. */
  workspacesDir: string;
  /** `<WorkspaceRoot>/logs`: one `<uuid>.log` per job. */
  logsDir: string;
  /** Architectures built here (`Architectures`, default from the machine, as spark maps it). */
  architectures: string[];
  /** Directory of the Curve keys (`CurveKeysDir`, default `/etc/laniakea/keys/curve`). */
  curveKeysDir: string;
  /** `<CurveKeysDir>/secret/<machine>-spark_private.sec`: the worker's Curve secret key. */
  curveSecretKeyFile: string;
  /** `<CurveKeysDir>/<machine>_lighthouse-server.pub`: Lighthouse's Curve public key. */
  lighthouseServerKeyFile: string;
  /**
   * Redis shared by this host's services (`RedisUrl`, default
   * `redis://127.0.0.1:6379`; setup-host, deploy/setup-host.sh, adds the socket
   * of the worker's own instance, `/run/redis-spark/redis-server.sock`, when unset).
   */
  redisUrl: string;
  /** BullMQ key prefix (`QueuePrefix`, default `spark`). */
  queuePrefix: string;
  /**
   * Directory of the Redis ACL users' password files (`RedisCredentialsDir`,
   * default none: no login, Redis's default user as before). When set, each
   * service logs in as `spark-<service>` with `<dir>/spark-<service>.password`
   * (see `spark redis-acl`).
   */
  redisCredentialsDir: string | null;
  /**
   * `maxmemory` that setup-host (deploy/setup-host.sh) gives the worker's own Redis
   * (`RedisMaxMemory`, bytes; default {@link DEFAULT_REDIS_MAX_MEMORY}; 0: no
   * limit). With `maxmemory-policy noeviction`, Redis refuses writes past it
   * instead of growing until the kernel's OOM killer picks a process.
   */
  redisMaxMemory: number;
  /**
   * Armored OpenPGP secret key the signer loads (`GpgSecretKeyFile`), in
   * clear on disk; null when the key comes as {@link gpgSecretKeyCredential}.
   * Only the signer requires one of the two.
   */
  gpgSecretKeyFile: string | null;
  /**
   * Name of the systemd credential holding the armored secret key
   * (`GpgSecretKeyCredential`, e.g. `spark-signer-key`): the signer reads
   * `$CREDENTIALS_DIRECTORY/<name>`, which systemd decrypts for it from
   * `LoadCredentialEncrypted=` (`spark keytool install-signer-key`). Null when
   * the key is {@link gpgSecretKeyFile}; the two exclude each other.
   */
  gpgSecretKeyCredential: string | null;
  /**
   * Log level of every service (`LogLevel`, default `info`; one of
   * {@link LOG_LEVELS}). `SPARK_LOG_LEVEL` in a service's environment takes
   * precedence. A service applies a changed value on SIGHUP.
   */
  logLevel: LogLevel;
  /**
   * Address every service's Prometheus `/metrics` endpoint listens on unless
   * its table sets its own (`MetricsListen`, default
   * {@link DEFAULT_METRICS_LISTEN}): an IPv4 or IPv6 address of this host,
   * `0.0.0.0` for every IPv4 address, `::` for every address.
   */
  metricsListen: string;
  connector: ConnectorSettings;
  builder: BuilderSettings;
  signer: SignerSettings;
  uploader: UploaderSettings;
}
