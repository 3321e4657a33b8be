import { readFile, mkdir, chmod, chown, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KeyFileError, parseCurveKeyFile, type CurveKeyFile } from './curve-keyfile.js';
import { writeNew } from './key-new.js';

/** Reads and parses a keyfile, with the file name in every error. */
export async function readKeyFile(file: string): Promise<CurveKeyFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(
      `${file}: ${code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message}`,
    );
  }
  try {
    return parseCurveKeyFile(text);
  } catch (error) {
    if (error instanceof KeyFileError) throw new Error(`${file}: ${error.message}`);
    throw error;
  }
}

/**
 * Installs the worker's secret keyfile (from `key-new`'s `<id>.key_secret`)
 * where spark and the connector read it, `CurveKeysDir/secret/<machine>-spark_private.sec`:
 * the directory mode 0700, the file 0600. Run as root, the file takes the
 * owner of its directory (setup-host, deploy/setup-host.sh, gives `secret/`
 * to spark-connector), so the connector can read a key installed after it.
 * Refuses a file without a Curve secret key, and an existing target unless `force`.
 */
export async function installWorkerKey(source: string, target: string, force: boolean): Promise<void> {
  const keys = await readKeyFile(source);
  if (keys.curvePublicKey === null || keys.curveSecretKey === null) {
    throw new Error(`${source}: holds no Curve secret key; pass the <id>.key_secret file that key-new wrote`);
  }
  // CurveKeysDir stays 0755 (the server's public key lives there); only secret/ is closed.
  await mkdir(dirname(dirname(target)), { recursive: true, mode: 0o755 });
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  await chmod(dirname(target), 0o700);
  await writeNew(target, await readFile(source, 'utf8'), 0o600, force);
  if (process.getuid?.() === 0) {
    const dir = await stat(dirname(target));
    await chown(target, dir.uid, dir.gid);
  }
}

/**
 * Installs Lighthouse's public keyfile where spark and the connector read it,
 * `CurveKeysDir/<machine>_lighthouse-server.pub`, mode 0644. Refuses a file
 * that holds a secret key (that one must stay on the Lighthouse host).
 */
export async function installServerKey(source: string, target: string, force: boolean): Promise<void> {
  const keys = await readKeyFile(source);
  if (keys.curvePublicKey === null) {
    throw new Error(`${source}: holds no Curve public key`);
  }
  if (keys.curveSecretKey !== null || keys.edSigningKey !== null) {
    throw new Error(`${source}: holds a secret key, which must never leave the Lighthouse host; pass the public <id>.key file`);
  }
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });
  await writeNew(target, await readFile(source, 'utf8'), 0o644, force);
}
