import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import {
  JobBoard,
  startLighthouseStandIn,
  startUploadReceiver,
  type LighthouseStandIn,
  type StandInOptions,
  type UploadReceiver,
} from '@spark/testing';
import { makeThrowawayKey, type ThrowawayKey } from '../src/chain/openpgp-key.js';
import { startPackageArchive, type PackageArchive } from '../src/chain/package-archive.js';
import type { MachineTest } from './frame.js';

/** The world outside the worker, on the host: Lighthouse, the archive it uploads to, the sources it builds. */
export interface World {
  /** The upload receiver (the archive's `master` repository, over HTTP). */
  receiver: UploadReceiver;
  /** Where the receiver puts what the worker uploads. */
  uploads: string;
  /** The package sources jobs name. */
  archive: PackageArchive;
  /** The throwaway OpenPGP key the worker signs with, and the keyring `gpgv` checks against. */
  key: ThrowawayKey;
  /** Lighthouse's Curve key pair. */
  serverKeys: { publicKey: string; secretKey: string };
  /** Lighthouse's public key as a key file, as the operator installs it with `spark keytool install-server-key`. */
  lighthousePublic: string;
  /** Lighthouse's trusted worker keys directory: a worker's public key file written here is trusted. */
  trusted: string;
  /** Lighthouse's jobs and their states, kept across a restart of the stand-in. */
  board: JobBoard;
  /** The Lighthouse stand-in now running. */
  readonly standIn: LighthouseStandIn;
  /** Starts the stand-in again at the same endpoint, with the same keys and job board, after `standIn.close()`. */
  restartLighthouse: () => Promise<LighthouseStandIn>;
}

/**
 * Starts the world of a machine test: the upload receiver, the package
 * archive, a throwaway OpenPGP key (`uid`), and the Lighthouse stand-in
 * trusting `trustedKeys` (file name → key file) from the start; each closed
 * by the test's cleanup. Prints where each one listens.
 */
export async function startWorld(t: MachineTest, uid: string, trustedKeys: Record<string, string> = {}): Promise<World> {
  const receiver = await startUploadReceiver({ dir: join(t.work, 'uploads'), repos: ['master'], pathPrefix: '/_upload' });
  t.cleanup(() => receiver.close());
  const archive = await startPackageArchive(join(t.work, 'archive'));
  t.cleanup(() => archive.close());
  const key = await makeThrowawayKey(join(t.work, 'openpgp'), uid);
  const serverKeys = curveKeyPair();
  const trusted = join(t.work, 'trusted');
  await mkdir(trusted);
  for (const [name, text] of Object.entries(trustedKeys)) await writeFile(join(trusted, name), text);
  const board = new JobBoard();
  const lighthouse: StandInOptions = {
    serverKeys,
    trustedKeysDir: trusted,
    board,
    archiveRepos: { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' } },
  };
  let standIn = await startLighthouseStandIn(lighthouse);
  const endpoint = standIn.endpoint;
  t.cleanup(() => standIn.close());
  t.say(`Lighthouse stand-in ${endpoint}, upload receiver ${receiver.url}, sources ${archive.url}`);
  return {
    receiver,
    uploads: join(t.work, 'uploads', 'master'),
    archive,
    key,
    serverKeys,
    lighthousePublic: formatCurveKeyFile({
      metadata: { id: 'lighthouse' },
      curvePublicKey: serverKeys.publicKey,
      curveSecretKey: null,
      edVerifyKey: null,
      edSigningKey: null,
    }),
    trusted,
    board,
    get standIn() {
      return standIn;
    },
    async restartLighthouse() {
      // The port may take a moment to be free again after the close.
      for (let attempt = 0; ; attempt++) {
        try {
          standIn = await startLighthouseStandIn({ ...lighthouse, endpoint });
          return standIn;
        } catch (error) {
          if (attempt >= 20) throw error;
          await sleep(500);
        }
      }
    },
  };
}
