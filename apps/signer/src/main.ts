#!/usr/bin/env node
import { EXIT_CONFIG, loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown, processMetrics, serveMetrics } from '@spark/service';
import { AuditLogError, openAuditLog, type AuditLog } from './audit-log.js';
import { createSigner } from './signer.js';
import { loadSigningKey, SigningKeyError, type SigningKey } from '@spark/keys/signing-key';

const args = parseServiceArgs('spark-signer');
const { config } = loadConfigOrExit(args.configFile);
const logger = createLogger('signer');

let signingKey: SigningKey;
try {
  signingKey = await loadSigningKey({
    keyFile: config.gpgSecretKeyFile,
    keyId: config.gpgKeyId,
    passphraseFile: config.signer.passphraseFile,
    credentialsDir: process.env['CREDENTIALS_DIRECTORY'],
  });
} catch (error) {
  if (!(error instanceof SigningKeyError)) throw error;
  process.stderr.write(`spark-signer: ${error.message}\n`);
  process.exit(EXIT_CONFIG);
}
let audit: AuditLog;
try {
  audit = await openAuditLog(config.signer.auditLog);
} catch (error) {
  if (!(error instanceof AuditLogError)) throw error;
  process.stderr.write(`spark-signer: ${error.message}\n`);
  process.exit(EXIT_CONFIG);
}
const signer = createSigner({ config, logger, signingKey, audit });
const metricsEndpoint = await serveMetrics(processMetrics('signer'), config.signer.metricsPort, logger);
installShutdown(logger, async () => {
  await signer.close();
  await metricsEndpoint.close();
  await audit.close();
});
await signer.start();
