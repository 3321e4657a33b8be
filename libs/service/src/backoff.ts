/**
 * Exponential backoff by the number of tries that failed in a row: 1 s, 2 s,
 * 4 s … capped at 5 min (`baseMs`, `maxMs` change it). The uploader counts
 * tries that got no file through; the signer, tries that found the workspace
 * disk full.
 */
export function exponentialBackoff(baseMs = 1_000, maxMs = 300_000): (failedInARow: number) => number {
  return (failedInARow) => Math.min(baseMs * 2 ** Math.max(0, failedInARow - 1), maxMs);
}
