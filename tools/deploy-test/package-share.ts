import { copyFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { assertLintianClean, buildPackage } from '../package/build.js';
import { checkout } from './frame.js';
import { cachedNodejsDeb } from './rootfs.js';

/**
 * What a machine installed from the package is handed in `share`: spark-ts
 * revision 1 (`npm run package`, lintian clean; not with `spark: false`, for
 * a machine that builds it itself), the host's NodeSource nodejs (bookworm's
 * own is 18) and the test's debspawn stand-in. Returns the packages' file
 * names (`deb` empty without spark-ts); throws with lintian's output when it
 * is not clean.
 */
export async function packageIntoShare(
  share: string,
  say: (line: string) => void,
  options: { spark?: boolean } = {},
): Promise<{ deb: string; nodejs: string }> {
  let deb = '';
  if (options.spark ?? true) {
    const result = await buildPackage({ revision: 1, outDir: share });
    assertLintianClean(result);
    deb = basename(result.deb);
  }
  const node = await cachedNodejsDeb(say);
  const nodejs = basename(node);
  await copyFile(node, join(share, nodejs));
  await copyFile(join(checkout, 'tools/host-runner/debspawn'), join(share, 'debspawn'));
  return { deb, nodejs };
}
