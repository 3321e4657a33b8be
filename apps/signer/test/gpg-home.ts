import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Options of a test key made with `gpg --quick-gen-key`. */
export interface KeySpec {
  uid: string;
  /** `rsa4096`, `ed25519`, … */
  algo: string;
  /** `sign`, `cert`, … */
  usage: string;
  /** gpg expiry (`1y`, `never`); default gpg's. */
  expire?: string;
  passphrase?: string;
  /** gpg `--faked-system-time`, to make a key that has already expired. */
  fakedTime?: string;
}

/** A throwaway GNUPGHOME that makes and exports keys as the seed guide says. */
export interface GpgHome {
  dir: string;
  /** Generates a key; resolves to its fingerprint. */
  generate(spec: KeySpec): Promise<string>;
  /** `gpg --export-secret-key -a <fpr> > <file>`, mode 0600 as `chmod go-rwx` leaves it. */
  exportSecret(fingerprint: string, file: string, passphrase?: string): Promise<void>;
  /** Binary public keyring of the given keys, for `gpgv --keyring` and `dscverify --keyring`. */
  exportKeyring(fingerprints: string[], file: string): Promise<void>;
  /** Imports the revocation certificate gpg stored when it made the key. */
  revoke(fingerprint: string): Promise<void>;
  close(): Promise<void>;
}

/** Makes a new GNUPGHOME in a temp dir. */
export async function makeGpgHome(): Promise<GpgHome> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-gpg-'));
  const env = { ...process.env, GNUPGHOME: dir };
  const gpg = (args: string[], encoding: 'utf8' | 'buffer' = 'utf8') =>
    run('gpg', ['--batch', '--no-tty', '--pinentry-mode', 'loopback', ...args], { env, encoding, maxBuffer: 16 * 1024 * 1024 });
  return {
    dir,
    async generate(spec) {
      const args = ['--passphrase', spec.passphrase ?? ''];
      if (spec.fakedTime) args.push('--faked-system-time', spec.fakedTime);
      args.push('--quick-gen-key', spec.uid, spec.algo, spec.usage);
      if (spec.expire) args.push(spec.expire);
      const { stderr } = await gpg(args);
      const fpr = /openpgp-revocs\.d\/([0-9A-F]{40})\.rev/.exec(String(stderr))?.[1];
      if (!fpr) throw new Error(`gpg made no key: ${String(stderr)}`);
      return fpr;
    },
    async exportSecret(fingerprint, file, passphrase = '') {
      const { stdout } = await gpg(['--passphrase', passphrase, '--export-secret-key', '-a', fingerprint]);
      await writeFile(file, stdout, { mode: 0o600 });
    },
    async exportKeyring(fingerprints, file) {
      const { stdout } = await gpg(['--export', ...fingerprints], 'buffer');
      await writeFile(file, stdout);
    },
    async revoke(fingerprint) {
      const certificate = await readFile(join(dir, 'openpgp-revocs.d', `${fingerprint}.rev`), 'utf8');
      const revocation = join(dir, 'revoke.asc');
      // gpg stores the certificate with a leading ':' so that it is not imported by accident.
      await writeFile(revocation, certificate.replace(/^:-----/m, '-----'));
      await gpg(['--import', revocation]);
    },
    async close() {
      await run('gpgconf', ['--kill', 'all'], { env }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Stands in for a unit's $CREDENTIALS_DIRECTORY at `path`, laid out as systemd
 * lays it out: emptied, then `files` (name → content) written, each mode 0400,
 * in a directory of mode 0700.
 */
export async function fillCredentials(path: string, files: Record<string, string>): Promise<void> {
  await rm(path, { recursive: true, force: true });
  await mkdir(path, { mode: 0o700 });
  for (const [name, content] of Object.entries(files)) await writeFile(join(path, name), content, { mode: 0o400 });
}
