import { generateKeyPairSync } from 'node:crypto';
import { open, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile, type CurveKeyFile } from './curve-keyfile.js';

/** Who a new key belongs to: `lk-keytool key-new`'s options. */
export interface KeyOwner {
  /** Service or machine id; names the files `<id>.key` and `<id>.key_secret`. */
  id: string;
  name: string;
  email: string;
  organization?: string | undefined;
}

/** The two files {@link createKeyFiles} wrote. */
export interface NewKeyFiles {
  publicFile: string;
  secretFile: string;
  /** Z85 Curve public key, as printed for the operator. */
  curvePublicKey: string;
}

/** A key id becomes a file name: letters, digits and `._@-`, no path. */
export const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

function unpaddedBase64(base64url: string): string {
  return Buffer.from(base64url, 'base64url').toString('base64').replace(/=+$/, '');
}

/**
 * Creates a Curve25519 keypair (for CurveZMQ) and an Ed25519 keypair (for
 * Laniakea's message signing) and writes them as `lk-keytool key-new` does:
 * `<dir>/<id>.key` (public, mode 0644) and `<dir>/<id>.key_secret` (mode 0600,
 * created with that mode, so the secret is never readable by others). Refuses
 * to overwrite either file.
 */
export async function createKeyFiles(owner: KeyOwner, dir: string, now: Date = new Date()): Promise<NewKeyFiles> {
  if (!KEY_ID.test(owner.id) || owner.id.includes('..')) {
    throw new Error(`--id ${JSON.stringify(owner.id)} cannot be a file name: use letters, digits and ._@-`);
  }
  const metadata: Record<string, string> = { id: owner.id, name: owner.name, email: owner.email };
  if (owner.organization) metadata['organization'] = owner.organization;
  metadata['created-by'] = 'Laniakea Keytool';
  // Python's str(datetime.now()) form, which lk-keytool writes.
  metadata['date-created'] = now.toISOString().replace('T', ' ').replace('Z', '');

  const curve = curveKeyPair();
  const ed = generateKeyPairSync('ed25519');
  const edPrivate = ed.privateKey.export({ format: 'jwk' });
  const edPublic = ed.publicKey.export({ format: 'jwk' });
  if (!edPrivate.d || !edPublic.x) throw new Error('Ed25519 key export gave no key material');
  const keys: CurveKeyFile = {
    metadata,
    curvePublicKey: curve.publicKey,
    curveSecretKey: curve.secretKey,
    edVerifyKey: unpaddedBase64(edPublic.x),
    edSigningKey: unpaddedBase64(edPrivate.d),
  };

  await mkdir(dir, { recursive: true });
  const secretFile = join(dir, `${owner.id}.key_secret`);
  const publicFile = join(dir, `${owner.id}.key`);
  await writeNew(secretFile, formatCurveKeyFile(keys), 0o600);
  await writeNew(publicFile, formatCurveKeyFile({ ...keys, curveSecretKey: null, edSigningKey: null }), 0o644);
  return { publicFile, secretFile, curvePublicKey: curve.publicKey };
}

/** Writes a file that must not exist yet, created with `mode` (umask cannot widen it; chmod makes it exact). */
export async function writeNew(file: string, text: string, mode: number, overwrite = false): Promise<void> {
  const handle = await open(file, overwrite ? 'w' : 'wx', mode).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EEXIST') throw new Error(`${file} already exists; not overwriting it`);
    throw error;
  });
  try {
    await handle.chmod(mode);
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}
