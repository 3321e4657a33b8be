/**
 * Exit code of the `spark` commands (`config check`, `status`, `logs`, …) for a
 * configuration they cannot use, as `spark config check` has always answered.
 * The services exit with sysexits codes instead (sysexits.ts).
 */
export const EXIT_CONFIG = 2;
