import { BUILD_RESULTS, type JobRecord, type Manifest } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import { listedFileNames, type ControlFile } from './control-file.js';

/*
 * What ties a build's results to the job Lighthouse handed out
 * (docs/architecture.md, "Trust boundary"): the builder runs untrusted code and
 * writes the manifest, the `.changes` and the `.dud`, so none of them is taken
 * on its word. The job record the connector alone writes (`<prefix>:jobs:<uuid>`)
 * says what was handed out; the signer signs only results that match it.
 */

/** Label of refusals that concern the job as a whole rather than one file. */
export const JOB_LABEL = 'job';

/**
 * Checks the sign job against the job record before any file is read: there
 * is a record, the round is its current round, and the manifest names the
 * repository the job was handed out for (the repository picks the upload target).
 */
export function checkRecord(record: JobRecord | null, manifest: Manifest): asserts record is JobRecord {
  if (!record) {
    throw new ArtifactError(
      JOB_LABEL,
      `no job record for ${manifest.uuid}: this worker's connector did not hand it out (or its record expired)`,
    );
  }
  if (record.round !== manifest.round) {
    throw new ArtifactError(JOB_LABEL, `round ${manifest.round} is not the job's current round (${record.round})`);
  }
  if (record.repo !== manifest.repo) {
    throw new ArtifactError(JOB_LABEL, `the manifest names repository ${manifest.repo}, the job was handed out for ${record.repo}`);
  }
  if (record.kind !== 'package-build' && manifest.changes !== null) {
    throw new ArtifactError(manifest.changes, `a ${record.kind} job uploads no .changes`);
  }
}

/**
 * The architectures a `.changes` of the job may name: `all` for an `all` job
 * (debspawn `--only=indep`); the job's architecture, and `all` unless the job
 * says `do_indep: false` (`--only=arch`), for any other (`--only=binary`).
 * Never `source`: the builder builds binaries only, a source upload signed by
 * this worker would be one nobody asked for.
 */
export function allowedChangesArchitectures(record: JobRecord): string[] {
  if (record.architecture === 'all') return ['all'];
  return record.doIndep === false ? [record.architecture] : [record.architecture, 'all'];
}

function field(control: ControlFile, name: string): string {
  const value = control.paragraph.get(name);
  if (value === undefined || value.trim() === '') throw new ArtifactError(control.name, `has no ${name} field`);
  return value.trim();
}

/**
 * Checks a `.changes` against the job record: `Source` (its name, without a
 * `(version)`), `Version`, `Distribution` (the job's suite) and every
 * `Architecture` (see {@link allowedChangesArchitectures}); and that it lists
 * no `.dsc`, so it is no source upload.
 */
export function checkChangesOrigin(changes: ControlFile, record: JobRecord): void {
  const mismatch = (name: string, value: string, expected: string | null) =>
    new ArtifactError(changes.name, `${name} is ${JSON.stringify(value)}, the job was handed out for ${JSON.stringify(expected)}`);
  const source = field(changes, 'Source').split(/\s+/)[0] ?? '';
  if (source !== record.package) throw mismatch('Source', source, record.package);
  const version = field(changes, 'Version');
  if (version !== record.version) throw mismatch('Version', version, record.version);
  const distribution = field(changes, 'Distribution');
  if (distribution !== record.suite) throw mismatch('Distribution', distribution, record.suite);
  const allowed = allowedChangesArchitectures(record);
  const architectures = field(changes, 'Architecture').split(/\s+/);
  for (const architecture of architectures) {
    if (!allowed.includes(architecture)) {
      throw new ArtifactError(
        changes.name,
        `Architecture names ${architecture}; a ${record.architecture} job${record.doIndep === false ? ' without do_indep' : ''} may upload ${allowed.join(', ')}`,
      );
    }
  }
  for (const name of listedFileNames(changes)) {
    if (name.endsWith('.dsc'))
      throw new ArtifactError(changes.name, `lists ${name}: the builder builds binaries, this would be a source upload`);
  }
}

/**
 * Checks a `.dud` against the job: `X-Spark-Job` is its uuid, `X-Spark-Result`
 * one of `success`/`failure`/`depwait` and the manifest's result, and
 * `Architecture` the job's.
 */
export function checkDudOrigin(dud: ControlFile, record: JobRecord, manifest: Manifest): void {
  const job = field(dud, 'X-Spark-Job');
  if (job.toLowerCase() !== record.uuid.toLowerCase()) {
    throw new ArtifactError(dud.name, `X-Spark-Job is ${JSON.stringify(job)}, not this job (${record.uuid})`);
  }
  const result = field(dud, 'X-Spark-Result');
  if (!(BUILD_RESULTS as readonly string[]).includes(result)) {
    throw new ArtifactError(dud.name, `X-Spark-Result is ${JSON.stringify(result)}, not one of ${BUILD_RESULTS.join(', ')}`);
  }
  if (result !== manifest.result) {
    throw new ArtifactError(dud.name, `X-Spark-Result is ${result}, the manifest says ${manifest.result}`);
  }
  const architecture = field(dud, 'Architecture');
  if (architecture !== record.architecture) {
    throw new ArtifactError(dud.name, `Architecture is ${JSON.stringify(architecture)}, the job was handed out for ${record.architecture}`);
  }
}

/** Every manifest file is the `.changes`, the `.dud`, or listed in one of them: nothing unlisted is handed on. */
export function checkNothingUnlisted(manifest: Manifest, controls: readonly ControlFile[]): void {
  const listed = new Set<string>(controls.flatMap((control) => [control.name, ...listedFileNames(control)]));
  for (const entry of manifest.files) {
    if (!listed.has(entry.name)) {
      throw new ArtifactError(entry.name, `is in the manifest but listed in neither the .changes nor the .dud`);
    }
  }
}
