import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { DEFAULT_CONFIG_FILE, EX_CONFIG, loadConfigOrExitCode } from '@spark/config';
import { createKeyFiles, writeNew } from '@spark/keys';
import { installServerKey, installWorkerKey, readKeyFile } from '@spark/keys';
import { usageError } from '../commands.js';
import type { SignerKeyHost } from './install-signer-key.js';
import { SEALING_KEYS, type SealingKey } from './signer-key-credential.js';

/** Where a CLI command writes. */
export interface KeytoolIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const EXIT_FAILED = 1;

/** The host's systemd: `systemctl daemon-reload` after a drop-in changed, when systemd runs here. */
const SYSTEM_HOST: SignerKeyHost = {
  reloadSystemd: async () => {
    if (!existsSync('/run/systemd/system')) return;
    await promisify(execFile)('systemctl', ['daemon-reload'], { timeout: 60_000 });
  },
};

/** Runs `spark keytool <subcommand>`; resolves to the exit code. `host` is where install-signer-key writes (tests give theirs). */
export async function runKeytool(argv: string[], io: KeytoolIo, host: SignerKeyHost = SYSTEM_HOST): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'key-new':
        return await keyNew(rest, io);
      case 'install-worker-key':
      case 'install-server-key':
        return await installForWorker(sub, rest, io);
      case 'install-trusted-key':
        return await installTrusted(rest, io);
      case 'install-signer-key':
        return await installSigner(rest, io, host);
      case undefined:
      default:
        return usageError(io, 'keytool', `unknown subcommand ${JSON.stringify(sub ?? '')}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      return usageError(io, `keytool ${sub}`, error.message);
    }
    io.stderr.write(`spark keytool ${sub}: ${(error as Error).message}\n`);
    return EXIT_FAILED;
  }
}

class UsageError extends Error {}

/** Runs a `parseArgs` call, turning its complaints into usage errors. */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function keyNew(argv: string[], io: KeytoolIo): Promise<number> {
  const { values, positionals } = usage(() =>
    parseArgs({
      args: argv,
      options: { id: { type: 'string' }, name: { type: 'string' }, email: { type: 'string' }, organization: { type: 'string' } },
      allowPositionals: true,
    }),
  );
  const missing = (['id', 'name', 'email'] as const).filter((key) => !values[key]);
  if (missing.length > 0) throw new UsageError(`missing ${missing.map((key) => `--${key}`).join(', ')}`);
  const [dir, ...extra] = positionals;
  if (!dir || extra.length > 0) throw new UsageError('expected exactly one directory to write the key files to');
  const { id = '', name = '', email = '', organization } = values;
  const files = await createKeyFiles({ id, name, email, organization }, dir);
  io.stdout.write(
    `wrote ${files.publicFile} (public) and ${files.secretFile} (secret, mode 0600)\ncurve public key: ${files.curvePublicKey}\n`,
  );
  return 0;
}

async function installForWorker(sub: 'install-worker-key' | 'install-server-key', argv: string[], io: KeytoolIo): Promise<number> {
  const { values, positionals } = usage(() =>
    parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, force: { type: 'boolean' } }, allowPositionals: true }),
  );
  const [source, ...extra] = positionals;
  if (!source || extra.length > 0) throw new UsageError('expected exactly one key file');
  const config = loadConfigOrExitCode(values.config ?? DEFAULT_CONFIG_FILE, io.stderr);
  if (typeof config === 'number') return config;
  const force = values.force === true;
  if (sub === 'install-worker-key') {
    await installWorkerKey(source, config.curveSecretKeyFile, force);
    io.stdout.write(`installed ${source} as ${config.curveSecretKeyFile} (mode 0600)\n`);
  } else {
    await installServerKey(source, config.lighthouseServerKeyFile, force);
    io.stdout.write(`installed ${source} as ${config.lighthouseServerKeyFile} (mode 0644)\n`);
  }
  return 0;
}

async function installTrusted(argv: string[], io: KeytoolIo): Promise<number> {
  const { values, positionals } = usage(() =>
    parseArgs({ args: argv, options: { dir: { type: 'string' }, force: { type: 'boolean' } }, allowPositionals: true }),
  );
  const [name, source, ...extra] = positionals;
  if (!name || !source || extra.length > 0 || !values.dir) throw new UsageError('expected --dir DIR NAME KEYFILE');
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]*$/.test(name) || name.includes('..'))
    throw new UsageError(`${JSON.stringify(name)} cannot be a file name`);
  const keys = await readKeyFile(source);
  if (keys.curvePublicKey === null) throw new Error(`${source}: holds no Curve public key`);
  if (keys.curveSecretKey !== null)
    throw new Error(`${source}: holds a secret key, which must never leave the worker; pass its public <id>.key file`);
  const dir = values.dir;
  await mkdir(dir, { recursive: true });
  const target = join(dir, `${name}.pub.key`);
  await writeNew(target, await readFile(source, 'utf8'), 0o644, values.force === true);
  io.stdout.write(`installed ${source} as ${target}\n`);
  return 0;
}

async function installSigner(argv: string[], io: KeytoolIo, host: SignerKeyHost): Promise<number> {
  const { values, positionals } = usage(() =>
    parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, 'with-key': { type: 'string' }, force: { type: 'boolean' } },
      allowPositionals: true,
    }),
  );
  const sealWith = values['with-key'];
  if (sealWith !== undefined && !(SEALING_KEYS as readonly string[]).includes(sealWith)) {
    throw new UsageError(`--with-key takes ${SEALING_KEYS.join(', ')}, not ${JSON.stringify(sealWith)}`);
  }
  if (positionals.length > 1) throw new UsageError('expected at most one key file');
  const config = loadConfigOrExitCode(values.config ?? DEFAULT_CONFIG_FILE, io.stderr);
  if (typeof config === 'number') return config;
  const keyFile = positionals[0] ?? config.gpgSecretKeyFile;
  if (keyFile === null || keyFile === undefined) {
    throw new UsageError('expected the armored secret key file (gpg --export-secret-key -a <GpgKeyID>): spark.toml names none');
  }
  // Loaded here: only this subcommand needs openpgp.
  const { installSignerKey, nextSteps, SigningKeyError } = await import('./install-signer-key.js');
  try {
    const installed = await installSignerKey(
      config,
      keyFile,
      { ...(sealWith === undefined ? {} : { sealWith: sealWith as SealingKey }), force: values.force === true },
      host,
    );
    io.stdout.write(nextSteps(installed, keyFile));
    return 0;
  } catch (error) {
    if (!(error instanceof SigningKeyError)) throw error;
    // The key is not one the signer could use: nothing was written.
    io.stderr.write(`spark keytool install-signer-key: ${error.message}; nothing was installed\n`);
    return EX_CONFIG;
  }
}
