#!/usr/bin/env node
import { EX_CONFIG, EX_NOINPUT } from '@spark/config';
import {
  installShutdown,
  isLoopbackAddress,
  processMetrics,
  serveMetrics,
  startService,
  systemClock,
  type StartedService,
} from '@spark/service';
import { AuditLogError, openAuditLog, type AuditLog } from './audit-log.js';
import { createSigner } from './signer.js';
import { openSignerRedis } from './signer-redis.js';
import { loadSigningKey, SigningKeyError, type SigningKey } from '@spark/keys/signing-key';

// Typed, so that TypeScript knows `service.exit` does not return.
const service: StartedService = startService({
  service: 'signer',
  summary:
    'The only process that can read the OpenPGP secret key: checks what the builder made against the job and signs its .changes and .dud.',
  entryUrl: import.meta.url,
  environment: [
    [
      'CREDENTIALS_DIRECTORY',
      'set by systemd for LoadCredential= and LoadCredentialEncrypted=: the key is read from there when GpgSecretKeyCredential names it, its passphrase when [signer] PassphraseFile is not set',
    ],
    ['LOGS_DIRECTORY', "set by systemd's LogsDirectory=: the audit log goes there when [signer] AuditLog is not set"],
  ],
});
const { config, logger } = service;

let signingKey: SigningKey;
try {
  signingKey = await loadSigningKey({
    keyFile: config.gpgSecretKeyFile,
    keyCredential: config.gpgSecretKeyCredential,
    keyId: config.gpgKeyId,
    passphraseFile: config.signer.passphraseFile,
    credentialsDir: process.env['CREDENTIALS_DIRECTORY'],
  });
} catch (error) {
  if (!(error instanceof SigningKeyError)) throw error;
  service.exit(error.unreadable ? EX_NOINPUT : EX_CONFIG, error.message);
}
let audit: AuditLog;
try {
  audit = await openAuditLog(config.signer.auditLog);
} catch (error) {
  if (!(error instanceof AuditLogError)) throw error;
  service.exit(EX_CONFIG, error.message);
}
// Log rotation renames the audit log, then reloads the signer (deploy/logrotate/spark): new lines go to a new file.
service.onReload(async () => {
  try {
    await audit.reopen();
    logger.info({ auditLog: audit.file }, `SIGHUP: reopened the audit log ${audit.file}`);
  } catch (error) {
    if (!(error instanceof AuditLogError)) throw error;
    logger.error(
      { auditLog: audit.file },
      `SIGHUP: ${error.message}; audit lines still go to the file opened before (if log rotation renamed it, that is the rotated file): fix the directory and reload again`,
    );
  }
});
// The composition root: the signer's queues and records are opened here, on Redis, and handed to it.
const redis = openSignerRedis(config, logger);
const signer = createSigner({
  config,
  logger,
  signingKey,
  audit,
  clock: systemClock,
  signJobs: redis.signJobs,
  uploads: redis.uploads,
  reports: redis.reports,
  records: redis.records,
  ready: () => redis.ready(),
});
const metricsEndpoint = await serveMetrics(
  processMetrics('signer', { version: service.version }),
  config.signer.metricsPort,
  logger,
  config.signer.metricsListen,
);
if (metricsEndpoint.url && !isLoopbackAddress(config.signer.metricsListen)) {
  // The kernel drops what the unit's IP filter refuses: the scraper would only see timeouts, and the signer nothing.
  logger.info(
    `metrics: spark-signer.service lets the signer exchange packets with localhost only (IPAddressDeny=any, IPAddressAllow=localhost): ` +
      `a Prometheus server on another host reaches ${metricsEndpoint.url} only once a drop-in allows its address ` +
      `(systemctl edit spark-signer.service: [Service] IPAddressAllow=<its address>)`,
  );
}
installShutdown(logger, async () => {
  await signer.close();
  await redis.close();
  await metricsEndpoint.close();
  await audit.close();
});
await service.run(() => signer.start());
