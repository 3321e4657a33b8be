import type { SparkConfig } from './spark-config.js';

/**
 * Each setting of {@link SparkConfig} that comes from one key of spark.toml:
 * its path in the object and the key as an operator writes it. Derived fields
 * (`machineId`, `workspacesDir`, the key file paths, `file`) are left out:
 * they change only with the key they come from, which is listed.
 */
export const CONFIG_KEYS: readonly { path: string; key: string }[] = [
  ['lighthouseServer', 'LighthouseServer'],
  ['acceptedJobs', 'AcceptedJobs'],
  ['machineOwner', 'MachineOwner'],
  ['machineName', 'MachineName'],
  ['gpgKeyId', 'GpgKeyID'],
  ['maxJobs', 'MaxJobs'],
  ['workspaceRoot', 'WorkspaceRoot'],
  ['architectures', 'Architectures'],
  ['curveKeysDir', 'CurveKeysDir'],
  ['redisUrl', 'RedisUrl'],
  ['queuePrefix', 'QueuePrefix'],
  ['redisCredentialsDir', 'RedisCredentialsDir'],
  ['redisMaxMemory', 'RedisMaxMemory'],
  ['gpgSecretKeyFile', 'GpgSecretKeyFile'],
  ['gpgSecretKeyCredential', 'GpgSecretKeyCredential'],
  ['logLevel', 'LogLevel'],
  ['metricsListen', 'MetricsListen'],
  ['connector.replyTimeoutMs', '[connector] ReplyTimeout'],
  ['connector.pollIntervalMs', '[connector] PollInterval'],
  ['connector.archiveInfoIntervalMs', '[connector] ArchiveInfoInterval'],
  ['connector.startTimeoutMs', '[connector] StartTimeout'],
  ['connector.giveUpRejectedAfterMs', '[connector] GiveUpRejectedAfter'],
  ['connector.rejectedCooldownMs', '[connector] RejectedCooldown'],
  ['connector.metricsPort', '[connector] MetricsPort'],
  ['connector.metricsListen', '[connector] MetricsListen'],
  ['builder.statusIntervalMs', '[builder] StatusInterval'],
  ['builder.maxBuildTimeMs', '[builder] MaxBuildTime'],
  ['builder.idleOutputTimeoutMs', '[builder] IdleOutputTimeout'],
  ['builder.maxLogBytes', '[builder] MaxLogSize'],
  ['builder.downloadConnectTimeoutMs', '[builder] DownloadConnectTimeout'],
  ['builder.downloadIdleTimeoutMs', '[builder] DownloadIdleTimeout'],
  ['builder.drainTimeoutMs', '[builder] DrainTimeout'],
  ['builder.debspawn', '[builder] Debspawn'],
  ['builder.metricsPort', '[builder] MetricsPort'],
  ['builder.metricsListen', '[builder] MetricsListen'],
  ['builder.allowFileUrls', '[builder] AllowFileUrls'],
  ['builder.suites', '[builder] Suites'],
  ['signer.passphraseFile', '[signer] PassphraseFile'],
  ['signer.auditLog', '[signer] AuditLog'],
  ['signer.metricsPort', '[signer] MetricsPort'],
  ['signer.metricsListen', '[signer] MetricsListen'],
  ['uploader.connectTimeoutMs', '[uploader] ConnectTimeout'],
  ['uploader.idleTimeoutMs', '[uploader] IdleTimeout'],
  ['uploader.giveUpAfterMs', '[uploader] GiveUpAfter'],
  ['uploader.metricsPort', '[uploader] MetricsPort'],
  ['uploader.metricsListen', '[uploader] MetricsListen'],
].map(([path, key]) => ({ path: path!, key: key! }));

/** The value at a dotted path of {@link CONFIG_KEYS} (`connector.pollIntervalMs`). */
export function configValue(config: SparkConfig, path: string): unknown {
  let value: unknown = config;
  for (const part of path.split('.')) value = (value as Record<string, unknown>)[part];
  return value;
}

/** Sets the value at a dotted path of {@link CONFIG_KEYS} in place, so code that reads the config at use time sees it. */
export function setConfigValue(config: SparkConfig, path: string, value: unknown): void {
  const parts = path.split('.');
  const last = parts.pop()!;
  let table = config as unknown as Record<string, unknown>;
  for (const part of parts) table = table[part] as Record<string, unknown>;
  table[last] = value;
}

/** The keys whose effective value differs between two configs, in {@link CONFIG_KEYS} order. */
export function changedConfigKeys(before: SparkConfig, after: SparkConfig): { path: string; key: string }[] {
  return CONFIG_KEYS.filter(({ path }) => JSON.stringify(configValue(before, path)) !== JSON.stringify(configValue(after, path)));
}
