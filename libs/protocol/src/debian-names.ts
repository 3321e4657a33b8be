import { z } from 'zod';

/*
 * Debian's rules for the strings that later become file names, paths and
 * command arguments (Debian Policy §5.6.1 Source, §5.6.7 Package,
 * §5.6.12 Version; dpkg-architecture(1) for architecture names).
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

function printable(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

function named(pattern: RegExp, what: string, maxLength = 255) {
  return z.string().superRefine((value, ctx) => {
    if (value.length === 0 || value.length > maxLength || !pattern.test(value)) {
      ctx.addIssue({ code: 'custom', message: `${printable(value)} is not a valid ${what}` });
    } else if (value.includes('..')) {
      ctx.addIssue({ code: 'custom', message: `${printable(value)} is not a valid ${what}: it contains ".."` });
    }
  });
}

/** A job uuid: becomes a directory name, so nothing but a UUID is accepted. */
export const uuidSchema = named(UUID, 'UUID', 36);
/** A Debian package name. */
export const packageNameSchema = named(PACKAGE_NAME, 'Debian package name', 128);
/** A Debian package version. */
export const packageVersionSchema = named(PACKAGE_VERSION, 'Debian version', 128);
/** A Debian architecture name. */
export const architectureSchema = named(ARCHITECTURE, 'Debian architecture name', 64);
/** A suite or distribution codename. */
export const suiteSchema = named(SUITE, 'suite name', 128);
/** A plain file name from a Debian control file: no `/`, no `..`, no control characters. */
export const fileNameSchema = named(FILE_NAME, 'file name', 255);
/** An archive repository name. */
export const repoNameSchema = named(REPO_NAME, 'repository name', 128);
/** A lowercase hex SHA-256 digest. */
export const sha256Schema = named(SHA256_HEX, 'SHA-256 digest (64 lowercase hex digits)', 64);

/** True when `name` is a plain file name that is safe to join onto a directory. */
export function isSafeFileName(name: string): boolean {
  return fileNameSchema.safeParse(name).success;
}

/** The version without its epoch, as used in Debian file names (`1:2.0-1` → `2.0-1`). */
export function versionWithoutEpoch(version: string): string {
  const colon = version.indexOf(':');
  return colon === -1 ? version : version.slice(colon + 1);
}
