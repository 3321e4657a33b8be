import { z } from 'zod';
import {
  PACKAGE_NAME,
  PACKAGE_VERSION,
  ARCHITECTURE,
  SUITE,
  FILE_NAME,
  REPO_NAME,
  UUID,
  SHA256_HEX,
  MAX_ARCHITECTURE_LENGTH,
} from './name-patterns.js';

// The patterns live apart so `@spark/config` can read them without zod (name-patterns.ts).
export * from './name-patterns.js';

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
export const architectureSchema = named(ARCHITECTURE, 'Debian architecture name', MAX_ARCHITECTURE_LENGTH);
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

/** The parts of a file name as dpkg names what a build uploads. */
export interface UploadFileName {
  package: string;
  /** Without an epoch: file names never carry one. */
  version: string;
  architecture: string;
  /** What follows the architecture: `deb`, `udeb`, `ddeb`, `buildinfo`, `changes`, `tar.gz`, … */
  type: string;
}

/*
 * `<package>_<version>_<architecture>.<type>`: how dpkg-deb names a binary
 * package and dpkg-genbuildinfo / dpkg-genchanges their files; Laniakea's
 * archive reads names the same way (re_file_binary, re_file_buildinfo in
 * laniakea/archive/utils.py). Neither a package name, a version nor an
 * architecture contains `_`, and an architecture no `.`, so the split is unique.
 */
const UPLOAD_FILE_NAME = /^([a-z0-9][a-z0-9+.-]+)_([A-Za-z0-9][A-Za-z0-9.+~-]*)_([a-z0-9][a-z0-9-]*)\.([a-z0-9][a-z0-9.]*)$/;

/** Splits `name` into {@link UploadFileName} parts; null when it is not named that way. */
export function parseUploadFileName(name: string): UploadFileName | null {
  const match = UPLOAD_FILE_NAME.exec(name);
  if (!match) return null;
  const [, pkg, version, architecture, type] = match as unknown as [string, string, string, string, string];
  return { package: pkg, version, architecture, type };
}
