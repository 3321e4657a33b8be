import { createRequire } from 'node:module';
import type * as OpenPgp from 'openpgp';

export type { PrivateKey } from 'openpgp';

/**
 * openpgp.js as its package gives it to `require`: the minified CommonJS
 * build (400 KB of source) rather than the 1.2 MB ES module `import` gets.
 * The same code, 2 MiB less resident in the signer (9 → 7 MiB over a bare
 * node, with nodeFlags('signer'); docs/benchmarks.md, "Idle memory").
 */
export const openpgp = createRequire(import.meta.url)('openpgp') as typeof OpenPgp;
