/** The fields of a package-build job that tests name; everything else is a plain record as Lighthouse sends it. */
export type WirePackageJob = Record<string, unknown> & { uuid: string; kind: string; architecture: string };

/**
 * A valid package-build job as Lighthouse hands it out (the wire form, not
 * yet parsed): `hello` 1.0-1 for bookworm/amd64. `overrides` replaces
 * top-level fields; to change one field of `data`, spread
 * `packageJob(uuid).data` into the override.
 */
export function packageJob(uuid: string, overrides: Record<string, unknown> = {}): WirePackageJob {
  return {
    uuid,
    module: 'core',
    kind: 'package-build',
    version: '1.0-1',
    architecture: 'amd64',
    time_created: '2026-11-26T00:00:00',
    repo: 'master',
    data: {
      package_name: 'hello',
      package_version: '1.0-1',
      maintainer: 'A <a@example.org>',
      suite: 'bookworm',
      dsc_url: 'https://archive.example.org/master/pool/h/hello/hello_1.0-1.dsc',
      sha256sum: 'a'.repeat(64),
      do_indep: false,
    },
    ...overrides,
  };
}

/**
 * A builder heartbeat as @spark/protocol's schema has it. Spelled here as a
 * type because @spark/protocol's own tests use this package; every caller
 * hands it to `writeBuilderHeartbeat`, whose type checks it against the schema.
 */
export interface BuilderHeartbeatFixture {
  id: string;
  slots: number;
  busy: number;
  kinds: ('package-build' | 'os-image-build')[];
  architectures: string[];
  accepting: boolean;
  at: number;
}

/** A heartbeat of an idle builder with one free slot for amd64 package builds, written now. */
export function builderHeartbeat(overrides: Partial<BuilderHeartbeatFixture> = {}): BuilderHeartbeatFixture {
  return {
    id: 'b1',
    slots: 1,
    busy: 0,
    kinds: ['package-build'],
    architectures: ['amd64'],
    accepting: true,
    at: Date.now(),
    ...overrides,
  };
}
