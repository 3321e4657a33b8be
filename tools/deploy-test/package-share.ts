import { copyFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { buildPackage } from '../package/build.js';
import { checkout } from './frame.js';
import { cachedNodejsDeb } from './rootfs.js';

/**
 * What a machine installed from the package is handed in `share`: spark-ts
 * revision 1 (`npm run package`, lintian clean), the host's NodeSource nodejs
 * (bookworm's own is 18) and the test's debspawn stand-in. Returns the two
 * packages' file names; throws with lintian's output when it is not clean.
 */
export async function packageIntoShare(share: string, say: (line: string) => void): Promise<{ deb: string; nodejs: string }> {
  const result = await buildPackage({ revision: 1, outDir: share });
  if (result.lintian.status !== 0)
    throw new Error(`lintian on ${basename(result.deb)}: exit ${result.lintian.status}\n${result.lintian.output}`);
  const node = await cachedNodejsDeb(say);
  const nodejs = basename(node);
  await copyFile(node, join(share, nodejs));
  await copyFile(join(checkout, 'tools/host-runner/debspawn'), join(share, 'debspawn'));
  return { deb: basename(result.deb), nodejs };
}
