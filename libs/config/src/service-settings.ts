import { join } from 'node:path';
import { SUITE, isValidName } from '@spark/protocol/name-patterns';
import { SERVICE_KEYS } from './config-keys.js';
import type { ConfigEnvironment } from './config-environment.js';
import { BUILDER_DEFAULTS, CONNECTOR_DEFAULTS, SIGNER_DEFAULTS, UPLOADER_DEFAULTS } from './defaults.js';
import type { BuilderSettings, ConnectorSettings, SignerSettings, UploaderSettings } from './spark-config.js';
import { describeType, type Table, type TableReader } from './table-reader.js';

/** The four services' tables of a config, read. */
export interface ServiceSettings {
  connector: ConnectorSettings;
  builder: BuilderSettings;
  signer: SignerSettings;
  uploader: UploaderSettings;
}

/**
 * Reads the `[connector]`, `[builder]`, `[signer]` and `[uploader]` tables of
 * `data` through `reader`, which records each problem (an unknown key, a
 * wrong value, a deprecated key) with its line. A missing table or key takes
 * its default; a wrong one too, the problem recorded. `workspaceRoot` and
 * `env` give the signer's audit log default, `globalMetricsListen` (the
 * top-level `MetricsListen`) each table's own default.
 */
export function readServiceSettings(
  reader: TableReader,
  data: Table,
  defaults: { workspaceRoot: string; globalMetricsListen: string; env: ConfigEnvironment },
): ServiceSettings {
  const { workspaceRoot, globalMetricsListen, env } = defaults;
  const service = (name: keyof typeof SERVICE_KEYS): Table => {
    const value = data[name];
    if (value === undefined) return {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      reader.error(null, name, `expected a table [${name}], got ${describeType(value)}`);
      return {};
    }
    reader.checkUnknown(value as Table, name, SERVICE_KEYS[name]);
    return value as Table;
  };
  const connectorTable = service('connector');
  const builderTable = service('builder');
  const signerTable = service('signer');
  const uploaderTable = service('uploader');
  const seconds = (table: Table, section: string, key: string, fallbackMs: number, min = 0.001) => {
    const value = reader.number(table, section, key, { min });
    return value === undefined ? fallbackMs : Math.round(value * 1000);
  };
  const metricsPort = (table: Table, section: string, fallback: number) =>
    reader.integer(table, section, 'MetricsPort', { min: 0, max: 65535 }) ?? fallback;
  const metricsListen = (table: Table, section: string) => reader.address(table, section, 'MetricsListen') ?? globalMetricsListen;

  const connector: ConnectorSettings = {
    replyTimeoutMs: seconds(connectorTable, 'connector', 'ReplyTimeout', CONNECTOR_DEFAULTS.replyTimeoutMs),
    pollIntervalMs: seconds(connectorTable, 'connector', 'PollInterval', CONNECTOR_DEFAULTS.pollIntervalMs),
    archiveInfoIntervalMs: seconds(connectorTable, 'connector', 'ArchiveInfoInterval', CONNECTOR_DEFAULTS.archiveInfoIntervalMs),
    startTimeoutMs: seconds(connectorTable, 'connector', 'StartTimeout', CONNECTOR_DEFAULTS.startTimeoutMs),
    giveUpRejectedAfterMs: seconds(connectorTable, 'connector', 'GiveUpRejectedAfter', CONNECTOR_DEFAULTS.giveUpRejectedAfterMs),
    rejectedCooldownMs: seconds(connectorTable, 'connector', 'RejectedCooldown', CONNECTOR_DEFAULTS.rejectedCooldownMs),
    metricsPort: metricsPort(connectorTable, 'connector', CONNECTOR_DEFAULTS.metricsPort),
    metricsListen: metricsListen(connectorTable, 'connector'),
  };
  const builder: BuilderSettings = {
    statusIntervalMs: seconds(builderTable, 'builder', 'StatusInterval', BUILDER_DEFAULTS.statusIntervalMs),
    maxBuildTimeMs: seconds(builderTable, 'builder', 'MaxBuildTime', BUILDER_DEFAULTS.maxBuildTimeMs),
    idleOutputTimeoutMs: seconds(builderTable, 'builder', 'IdleOutputTimeout', BUILDER_DEFAULTS.idleOutputTimeoutMs),
    maxLogBytes:
      reader.integer(builderTable, 'builder', 'MaxLogSize', { min: 4096, max: Number.MAX_SAFE_INTEGER }) ?? BUILDER_DEFAULTS.maxLogBytes,
    downloadConnectTimeoutMs: seconds(builderTable, 'builder', 'DownloadConnectTimeout', BUILDER_DEFAULTS.downloadConnectTimeoutMs),
    downloadIdleTimeoutMs: seconds(builderTable, 'builder', 'DownloadIdleTimeout', BUILDER_DEFAULTS.downloadIdleTimeoutMs),
    drainTimeoutMs: seconds(builderTable, 'builder', 'DrainTimeout', BUILDER_DEFAULTS.drainTimeoutMs, 0),
    debspawn: reader.string(builderTable, 'builder', 'Debspawn') ?? BUILDER_DEFAULTS.debspawn,
    metricsPort: metricsPort(builderTable, 'builder', BUILDER_DEFAULTS.metricsPort),
    metricsListen: metricsListen(builderTable, 'builder'),
    allowFileUrls: reader.boolean(builderTable, 'builder', 'AllowFileUrls') ?? BUILDER_DEFAULTS.allowFileUrls,
    suites: reader.stringArray(builderTable, 'builder', 'Suites') ?? [],
  };
  for (const suite of builder.suites) {
    if (!isValidName(SUITE, suite)) reader.error('builder', 'Suites', `${JSON.stringify(suite)} is not a suite name`);
  }
  const signer: SignerSettings = {
    passphraseFile: reader.path(signerTable, 'signer', 'PassphraseFile') ?? null,
    auditLog: reader.path(signerTable, 'signer', 'AuditLog') ?? join(env.logsDirectory?.() ?? join(workspaceRoot, 'audit'), 'signer.log'),
    metricsPort: metricsPort(signerTable, 'signer', SIGNER_DEFAULTS.metricsPort),
    metricsListen: metricsListen(signerTable, 'signer'),
  };
  // Deprecated keys of older configs. FileTimeout bounded a whole PUT whatever the file's size, so a
  // large file on a slow link could never finish; its value is read as IdleTimeout, the nearest
  // setting (no progress for that long). Attempts is ignored: uploads are retried until GiveUpAfter.
  const legacyFileTimeoutMs = seconds(uploaderTable, 'uploader', 'FileTimeout', 0);
  if (uploaderTable['FileTimeout'] !== undefined) {
    reader.warning(
      'uploader',
      'FileTimeout',
      uploaderTable['IdleTimeout'] === undefined
        ? 'deprecated: it bounded the whole PUT whatever the file size; read as IdleTimeout (no progress for that long). Rename it to IdleTimeout'
        : 'deprecated and ignored: IdleTimeout is set',
    );
  }
  if (uploaderTable['Attempts'] !== undefined) {
    reader.integer(uploaderTable, 'uploader', 'Attempts', { min: 1, max: 100 });
    reader.warning('uploader', 'Attempts', 'deprecated and ignored: uploads are retried with backoff until GiveUpAfter');
  }
  const uploader: UploaderSettings = {
    connectTimeoutMs: seconds(uploaderTable, 'uploader', 'ConnectTimeout', UPLOADER_DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: seconds(uploaderTable, 'uploader', 'IdleTimeout', legacyFileTimeoutMs || UPLOADER_DEFAULTS.idleTimeoutMs),
    giveUpAfterMs: seconds(uploaderTable, 'uploader', 'GiveUpAfter', UPLOADER_DEFAULTS.giveUpAfterMs),
    metricsPort: metricsPort(uploaderTable, 'uploader', UPLOADER_DEFAULTS.metricsPort),
    metricsListen: metricsListen(uploaderTable, 'uploader'),
  };
  return { connector, builder, signer, uploader };
}
