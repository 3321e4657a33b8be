/**
 * Whether `name` can name a systemd credential as spark uses one (a file in
 * `$CREDENTIALS_DIRECTORY`, the ID of `LoadCredentialEncrypted=ID:PATH`):
 * letters, digits, `.`, `_` and `-`, not starting with `.`, at most 255
 * characters. systemd allows a little more (any printable ASCII but `/` and
 * `:`); this is the part that needs no quoting in a unit file or a shell.
 */
export function isCredentialName(name: string): boolean {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/.test(name);
}
