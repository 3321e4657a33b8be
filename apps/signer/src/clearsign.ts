import { openpgp, type PrivateKey } from '@spark/keys/openpgp';
import { splitClearsigned } from '@spark/protocol';

/**
 * Clearsigns text the way `gpg --clearsign` (and so `debsign`) does: SHA-512,
 * text mode, dash-escaping, LF line ends. An existing signature is removed
 * first, so a file signed before is signed once, by this key.
 */
export async function clearsign(text: string, key: PrivateKey): Promise<string> {
  const body = splitClearsigned(text)?.text ?? text;
  // The line end before the signature armor is not part of the signed text (RFC 9580 §7.1).
  const message = await openpgp.createCleartextMessage({ text: body.replace(/\r?\n$/, '') });
  const signed = await openpgp.sign({
    message,
    signingKeys: key,
    config: { preferredHashAlgorithm: openpgp.enums.hash.sha512 },
  });
  // openpgp.js writes the cleartext with CRLF; the signature covers canonical CRLF text
  // either way, and Debian's tools expect LF as gpg writes it.
  return signed.replace(/\r\n/g, '\n');
}
