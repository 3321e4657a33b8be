import type { ArchiveTarget } from '@spark/protocol';

const FQDN = /^([^:/]+)(?::([0-9]+))?(\/.*)?$/;

/**
 * The URL dput-ng's http method PUTs `fileName` to for a profile with this
 * target's `fqdn` and `method` and `incoming = <repo>` (dput/uploaders/http.py,
 * `HTTPUploader.initialize` and `upload_file`): `<method>://<host>[:<port>]`,
 * then the fqdn's path kept as written (`host/_upload` → `/_upload`), then
 * `/<repo>/`, then the file name. As urllib does, the host is lowercased and
 * the port written as a number (a port of 0 is dropped).
 *
 * One deliberate difference: dput-ng skips the `<method>://` prefix when the
 * fqdn itself starts with "http" (a scheme it expects there), which would
 * mangle a host like `httpd.example.org`; Lighthouse's fqdn never carries a
 * scheme (`archiveTargetSchema`), so we always add it.
 */
export function dputUploadUrl(target: ArchiveTarget, repo: string, fileName: string): string {
  const match = FQDN.exec(target.upload_fqdn);
  if (!match) {
    throw new Error(`upload fqdn ${JSON.stringify(target.upload_fqdn)} is not host[:port][/path]`);
  }
  const host = (match[1] as string).toLowerCase();
  const port = match[2] === undefined ? 0 : Number(match[2]);
  const path = match[3] ?? '';
  const incoming = `${repo.startsWith('/') ? '' : '/'}${repo}${repo.endsWith('/') ? '' : '/'}`;
  return `${target.upload_method}://${host}${port ? `:${port}` : ''}${path}${incoming}${fileName}`;
}
