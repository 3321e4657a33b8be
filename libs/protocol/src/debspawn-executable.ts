import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';

/**
 * The PATH the build helper runs debspawn with and looks `[builder] Debspawn`
 * up on: sudo's `secure_path` on Debian, which the helper runs under.
 */
export const SECURE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * `[builder] Debspawn` resolved to the executable the build helper runs: an
 * absolute path as given, a bare name as found on {@link SECURE_PATH} (never
 * on the caller's PATH), and a relative path never. Null when there is no
 * such executable. `spark verify` checks the one this returns, so it checks
 * the debspawn builds run.
 */
export async function resolveDebspawn(name: string): Promise<string | null> {
  const candidates = isAbsolute(name) ? [name] : name.includes('/') ? [] : SECURE_PATH.split(':').map((dir) => join(dir, name));
  for (const candidate of candidates) {
    const executable = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (executable) return candidate;
  }
  return null;
}
