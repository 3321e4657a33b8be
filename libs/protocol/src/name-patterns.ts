/*
 * Debian's rules for the strings that later become file names, paths and
 * command arguments (Debian Policy §5.6.1 Source, §5.6.7 Package,
 * §5.6.12 Version; dpkg-architecture(1) for architecture names). Without
 * zod, like constants.ts: @spark/config imports it through
 * `@spark/protocol/name-patterns`.
 */

/** Source or binary package name (Policy §5.6.7): lowercase, digits, `+-.`, at least two chars, starting alphanumeric. */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** Package version (Policy §5.6.12): `[epoch:]upstream[-revision]` from alphanumerics and `.+~-:`. */
export const PACKAGE_VERSION = /^(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~-]*$/;

/** Architecture name (`amd64`, `all`, `any`, `linux-any`, …). */
export const ARCHITECTURE = /^[a-z0-9][a-z0-9-]*$/;

/** Suite or distribution codename (`bookworm`, `unstable`, `bookworm-backports`, `x.y`). */
export const SUITE = /^[A-Za-z0-9][A-Za-z0-9.+_-]*$/;

/**
 * A plain file name as it appears in a `.dsc`, `.changes` or `.dud` file list:
 * package-name and version characters plus `_`, never a path, never `.` or `..`.
 */
export const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9.+~_:-]*$/;

/** Repository name in the archive (`master`, `extra`), used as a URL path segment. */
export const REPO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** RFC 4122 UUID, any version, lowercase or uppercase hex. */
export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Lowercase hex SHA-256 digest. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * True when `value` is a valid name by `pattern`: 1 to `maxLength` characters
 * and never `..` — the check the schemas of debian-names.ts make, without zod
 * (for @spark/config, which loads no schema code).
 */
export function isValidName(pattern: RegExp, value: string, maxLength = 255): boolean {
  return value.length > 0 && value.length <= maxLength && pattern.test(value) && !value.includes('..');
}

/** Longest architecture name {@link ARCHITECTURE} and architectureSchema accept. */
export const MAX_ARCHITECTURE_LENGTH = 64;
