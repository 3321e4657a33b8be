/**
 * The V8 flags every service runs with: `spark run`'s supervisor gives them
 * to its children, and the launchers deploy/install.sh writes for the systemd
 * units carry the same. Chosen by measurement
 * (docs/benchmarks.md, "Idle memory"): `--lite-mode` (no optimising
 * compilers) takes a service's idle RSS from 75–90 MiB to under 60 and costs
 * about 4× the CPU on hot JavaScript, of which a job has a few milliseconds
 * (the builder's log relay, 93 → 27 MB/s, is where it shows);
 * `--max-semi-space-size=1` keeps the young generation at 1 MiB instead of
 * letting it grow to 16 MiB per half under the steady small garbage of polling.
 * `--lite-mode` turns WebAssembly off (V8 warns so on every start unless
 * `--no-expose-wasm` says it): nothing the services run needs it, but for
 * openpgp.js's Argon2 key protection, which the signer then refuses with a
 * clear message (signing-key.ts).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--lite-mode', '--no-expose-wasm', '--max-semi-space-size=1'];
