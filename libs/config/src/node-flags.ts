/** The programs started with V8 flags of their own: the four services and the `spark` command (whose `spark run` supervises them). */
export type NodeProgram = 'cli' | 'connector' | 'builder' | 'signer' | 'uploader';

/**
 * Flags for a process whose work is waiting and moving bytes in native code:
 * `--lite-mode` (no optimising compilers) takes a service's idle RSS from
 * 75–90 MiB to under 60 and costs about 4× the CPU on hot JavaScript, of
 * which a job has a few milliseconds; `--max-semi-space-size=1` keeps the
 * young generation at 1 MiB instead of letting it grow to 16 MiB per half
 * under the steady small garbage of polling. `--lite-mode` turns WebAssembly
 * off (V8 warns so on every start unless `--no-expose-wasm` says it): nothing
 * these processes run needs it, but for openpgp.js's Argon2 key protection,
 * which the signer then refuses with a clear message (signing-key.ts).
 */
const LEAN = ['--lite-mode', '--no-expose-wasm', '--max-semi-space-size=1'] as const;

/**
 * The builder's hot path is JavaScript: it reads back every byte a build
 * prints (line scanning, excerpts, warning patterns). Under `--lite-mode` its
 * relay ran at a third of its speed when it passed the output through itself
 * (310 → 116 MB/s), and at two thirds since a copier writes the log (262 →
 * 192 and 219 → 140 MB/s, docs/benchmarks.md, "Log relay through a copier"),
 * so it keeps the optimising compilers and pays a few MiB of idle RSS for
 * them (docs/benchmarks.md, "Idle memory").
 */
const BUILDER = ['--max-semi-space-size=1'] as const;

/**
 * The V8 flags `program` runs with, chosen by measurement (docs/benchmarks.md,
 * "Idle memory"): `spark run`'s supervisor gives them to its children, and the
 * Debian package's launchers (for the systemd units and `spark`), which
 * tools/package/build.ts writes from this function, carry the same.
 */
export function nodeFlags(program: NodeProgram): readonly string[] {
  return program === 'builder' ? BUILDER : LEAN;
}
