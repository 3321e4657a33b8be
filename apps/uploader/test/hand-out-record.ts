import type { Manifest, NewJobRecord } from '@spark/protocol';

/** The job record the connector writes when Lighthouse hands out the job of `manifest` (a package build for bookworm/amd64). */
export function handOutRecord(manifest: Pick<Manifest, 'uuid' | 'round' | 'repo'>): NewJobRecord {
  return {
    uuid: manifest.uuid,
    round: manifest.round,
    kind: 'package-build',
    architecture: 'amd64',
    repo: manifest.repo,
    package: null,
    version: null,
    suite: 'bookworm',
    receivedAt: Number(manifest.round),
  };
}
