/** A file that fails verification: the job is refused and nothing is signed. */
export class ArtifactError extends Error {
  override readonly name = 'ArtifactError';

  constructor(
    /** The file's name in the job's artifacts dir. */
    readonly file: string,
    /** Why it was refused, for the operator and the failed report. */
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}
