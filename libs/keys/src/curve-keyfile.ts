/*
 * The Laniakea keyfile format (src/keytool/keytool.py in lkhq/laniakea): a
 * ZeroMQ certificate (the text pyzmq's `zmq.auth.load_certificate` and czmq
 * read) with a `metadata` section, a `curve` section holding the Z85 Curve25519
 * keys and an `ed` section holding base64 Ed25519 keys for message signing.
 */

const Z85_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_INDEX = new Map([...Z85_ALPHABET].map((char, index) => [char, index]));

/** Length of a Z85-encoded Curve25519 key in characters (32 bytes → 40 chars). */
export const Z85_KEY_LENGTH = 40;

/** Encodes bytes as Z85 (ZeroMQ RFC 32); the length must be a multiple of 4. */
export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Error(`Z85 needs a multiple of 4 bytes, got ${data.length}`);
  let out = '';
  for (let offset = 0; offset < data.length; offset += 4) {
    let value =
      (((data[offset] ?? 0) << 24) | ((data[offset + 1] ?? 0) << 16) | ((data[offset + 2] ?? 0) << 8) | (data[offset + 3] ?? 0)) >>> 0;
    const chunk: string[] = [];
    for (let i = 0; i < 5; i++) {
      chunk.unshift(Z85_ALPHABET[value % 85] ?? '');
      value = Math.floor(value / 85);
    }
    out += chunk.join('');
  }
  return out;
}

/** Decodes Z85 text (length a multiple of 5); throws on a character outside the alphabet. */
export function z85Decode(text: string): Uint8Array {
  if (text.length % 5 !== 0) throw new Error(`Z85 text must be a multiple of 5 characters, got ${text.length}`);
  const out = new Uint8Array((text.length / 5) * 4);
  for (let offset = 0; offset < text.length; offset += 5) {
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const char = text[offset + i] ?? '';
      const digit = Z85_INDEX.get(char);
      if (digit === undefined) throw new Error(`${JSON.stringify(char)} is not a Z85 character`);
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) throw new Error('Z85 group out of range');
    const at = (offset / 5) * 4;
    out[at] = (value >>> 24) & 0xff;
    out[at + 1] = (value >>> 16) & 0xff;
    out[at + 2] = (value >>> 8) & 0xff;
    out[at + 3] = value & 0xff;
  }
  return out;
}

/** True when `key` is a Z85-encoded 32-byte Curve25519 key. */
export function isZ85Key(key: string): boolean {
  if (key.length !== Z85_KEY_LENGTH) return false;
  try {
    z85Decode(key);
    return true;
  } catch {
    return false;
  }
}

/** What a Laniakea keyfile holds. Keys absent from the file are null. */
export interface CurveKeyFile {
  /** `metadata` section entries (`id`, `name`, `email`, `organization`, `created-by`, `date-created`). */
  metadata: Record<string, string>;
  /** Z85 Curve25519 public key (`curve` / `public-key`); null when empty or absent. */
  curvePublicKey: string | null;
  /** Z85 Curve25519 secret key (`curve` / `secret-key`), in secret files only. */
  curveSecretKey: string | null;
  /** Base64 (unpadded) Ed25519 verify key (`ed` / `verify-key`). */
  edVerifyKey: string | null;
  /** Base64 (unpadded) Ed25519 signing key seed (`ed` / `signing-key`), in secret files only. */
  edSigningKey: string | null;
}

/** Thrown when a keyfile cannot be read as one; the message says what is wrong. */
export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

/**
 * Reads the text of a Laniakea keyfile (or a plain ZeroMQ certificate).
 * Curve keys present in the file must be valid Z85 keys; throws
 * {@link KeyFileError} otherwise.
 */
export function parseCurveKeyFile(text: string): CurveKeyFile {
  const result: CurveKeyFile = { metadata: {}, curvePublicKey: null, curveSecretKey: null, edVerifyKey: null, edSigningKey: null };
  let section = '';
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!/^\s/.test(raw)) {
      section = line;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq === -1) throw new KeyFileError(`line ${index + 1}: expected "name = value"`);
    const name = line.slice(0, eq).trim();
    const value = line
      .slice(eq + 1)
      .trim()
      .replace(/^["']|["']$/g, '');
    if (section === 'metadata') {
      result.metadata[name] = value;
    } else if (section === 'curve' && (name === 'public-key' || name === 'secret-key')) {
      if (value === '') continue;
      if (!isZ85Key(value)) throw new KeyFileError(`line ${index + 1}: curve ${name} is not a 40-character Z85 key`);
      if (name === 'public-key') result.curvePublicKey = value;
      else result.curveSecretKey = value;
    } else if (section === 'ed' && name === 'verify-key') {
      result.edVerifyKey = value;
    } else if (section === 'ed' && name === 'signing-key') {
      result.edSigningKey = value;
    }
  }
  return result;
}

/** Writes a Laniakea keyfile: a secret file when it holds a secret key, a public one otherwise (keytool.py `_write_key_file`). */
export function formatCurveKeyFile(keys: CurveKeyFile): string {
  const secret = keys.curveSecretKey !== null || keys.edSigningKey !== null;
  const lines = secret
    ? ['#', '# Laniakea Messaging **Secret** Certificate', '# DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.', '#']
    : [
        '#',
        '# Laniakea Messaging Public Certificate',
        '# Exchange securely, or use a secure mechanism to verify the contents',
        '# of this file after exchange.',
        '#',
      ];
  lines.push('', 'metadata');
  for (const [name, value] of Object.entries(keys.metadata)) {
    lines.push(`    ${name.replace(/ /g, '_')} = "${value.replace(/"/g, "'")}"`);
  }
  lines.push('curve');
  // An empty public-key line keeps ZeroMQ's directory loader from giving up on the file (keytool.py).
  lines.push(`    public-key = "${keys.curvePublicKey ?? ''}"`);
  if (keys.curveSecretKey !== null) lines.push(`    secret-key = "${keys.curveSecretKey}"`);
  lines.push('ed');
  if (keys.edVerifyKey !== null) lines.push(`    verify-key = "${keys.edVerifyKey}"`);
  if (keys.edSigningKey !== null) lines.push(`    signing-key = "${keys.edSigningKey}"`);
  return `${lines.join('\n')}\n`;
}
