import { readFileSync, statSync } from 'node:fs';
import { KeyFileError, parseCurveKeyFile, type CurveKeyFile } from '@spark/keys';
import type { SparkConfig } from '@spark/config';

/** The Curve keys the connector talks to Lighthouse with (Z85). */
export interface ConnectorKeys {
  publicKey: string;
  secretKey: string;
  /** Lighthouse's public key. */
  serverKey: string;
}

/**
 * Thrown when a key file cannot be used; the message names the file and what
 * to do. `unreadable` is true when the file could not be read at all (missing,
 * no permission) rather than found wrong.
 */
export class KeySetupError extends Error {
  override name = 'KeySetupError';
  constructor(
    message: string,
    readonly unreadable = false,
  ) {
    super(message);
  }
}

function readKeyFile(file: string, what: string): CurveKeyFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new KeySetupError(`${file}: cannot read the ${what}: ${reason}`, true);
  }
  try {
    return parseCurveKeyFile(text);
  } catch (error) {
    if (error instanceof KeyFileError) throw new KeySetupError(`${file}: not a usable ${what}: ${error.message}`);
    throw error;
  }
}

/**
 * Loads the worker's Curve keypair (`CurveKeysDir/secret/<machine>-spark_private.sec`)
 * and Lighthouse's public key (`CurveKeysDir/<machine>_lighthouse-server.pub`).
 * Refuses a missing, unreadable or malformed file, and a secret key file that
 * group or others may read.
 */
export function loadConnectorKeys(config: Pick<SparkConfig, 'curveSecretKeyFile' | 'lighthouseServerKeyFile'>): ConnectorKeys {
  const secretFile = config.curveSecretKeyFile;
  const worker = readKeyFile(secretFile, "worker's Curve secret key");
  const mode = statSync(secretFile).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new KeySetupError(
      `${secretFile}: the secret key is readable by group or others (mode 0${mode.toString(8)}); run: chmod 600 ${secretFile}`,
    );
  }
  if (worker.curvePublicKey === null || worker.curveSecretKey === null) {
    throw new KeySetupError(
      `${secretFile}: holds no Curve ${worker.curveSecretKey === null ? 'secret' : 'public'} key; install the <id>.key_secret file from "spark keytool key-new" with "spark keytool install-worker-key"`,
    );
  }
  const server = readKeyFile(config.lighthouseServerKeyFile, "Lighthouse server's public key");
  if (server.curvePublicKey === null) {
    throw new KeySetupError(
      `${config.lighthouseServerKeyFile}: holds no Curve public key; install Lighthouse's public key file with "spark keytool install-server-key"`,
    );
  }
  return { publicKey: worker.curvePublicKey, secretKey: worker.curveSecretKey, serverKey: server.curvePublicKey };
}
