/*
 * Exit codes from sysexits(3), as Debian daemons use them: the services' at
 * start-up, and the `spark` commands' for a command line, a config or a Redis
 * they cannot use. `spark run` stops instead of restarting a service that
 * exits with one that a restart cannot fix (EXIT_FATAL_CODES).
 */

/** The command line was wrong: an unknown option, a missing value (EX_USAGE). */
export const EX_USAGE = 64;
/** A file the service must read is missing or unreadable: spark.toml, a key file (EX_NOINPUT). */
export const EX_NOINPUT = 66;
/** A service it needs is not there: Redis unreachable at start (EX_UNAVAILABLE). */
export const EX_UNAVAILABLE = 69;
/** An error the code did not handle: a bug, or a fault it has no answer to (EX_SOFTWARE). */
export const EX_SOFTWARE = 70;
/** The configuration does not parse or check: spark.toml, a key file's content or mode, `SPARK_LOG_LEVEL` (EX_CONFIG). */
export const EX_CONFIG = 78;

/** Exit codes of a service that a restart cannot fix until an operator acts: `spark run` stops on them. */
export const EXIT_FATAL_CODES: readonly number[] = [EX_USAGE, EX_NOINPUT, EX_CONFIG];
