/**
 * `npm run package [-- --revision N] [--snapshot] [--no-lintian] [--out DIR]`:
 * builds `spark-ts_<version>-<N>_<arch>.deb` (default revision 1, into
 * dist/package) with `dpkg-deb --root-owner-group`, then runs lintian on it
 * (its exit status is this command's). `--snapshot` adds the commit built to
 * the version (`0.1.0-1+git20261208.005707.618a62b0c3d1`: later commits sort
 * later, so each is an upgrade; deploy/install.sh builds these), and
 * `--no-lintian` skips lintian (a build host need not have it). The programs are esbuild bundles
 * (tools/package/bundle.ts; `spark`'s entry with its commands' chunks beside it); units, sudoers rule, logrotate template and
 * setup-host come from deploy/, the maintainer scripts and the sysusers.d and
 * tmpfiles.d snippets from deploy/debian/, the manual pages and completion
 * from tools/src/man.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { nodeFlags, type NodeProgram } from '@spark/config';
import { bundlePrograms, PACKAGED_BUILD_HELPER, zeromqAddon, type Bundles } from './bundle.js';
import { changelog, control, copyright, md5sums, SERVICES } from './debian.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LIB = '/usr/lib/spark-ts';
const CLI_ENTRY = `${LIB}/node_modules/@spark/cli/dist/main.js`;

function run(command: string, args: string[], options: { cwd?: string } = {}): string {
  return execFileSync(command, args, { cwd: options.cwd ?? ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
}

async function put(stage: string, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const target = join(stage, path);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, content);
  await chmod(target, mode);
}

/** A launcher in /usr/bin or /usr/sbin: the system node with the program's V8 flags (libs/config nodeFlags). */
function launcher(program: NodeProgram | null, entry: string): string {
  const flags = program ? nodeFlags(program).join(' ') + ' ' : '';
  return `#!/bin/sh\nexec /usr/bin/node ${flags}${entry} "$@"\n`;
}

/** `+git<date>.<time>.<commit>`, in UTC from the commit's time: a later commit is a later version. */
export function snapshotSuffix(commit: string, epochSeconds: number): string {
  const stamp = new Date(epochSeconds * 1000).toISOString().replace(/[-:]/g, '').slice(0, 15).replace('T', '.');
  return `+git${stamp}.${commit.slice(0, 12)}`;
}

/** Rewrites a file of deploy/ for the package's paths (/usr/sbin instead of /usr/local). */
function packagePaths(text: string): string {
  return text
    .replaceAll('/usr/local/sbin/spark-build-helper', PACKAGED_BUILD_HELPER)
    .replaceAll('/usr/local/bin/spark-', '/usr/sbin/spark-');
}

export interface PackageResult {
  deb: string;
  /** The source files bundled into each program (bundlePrograms' `modules`). */
  modules: Bundles['modules'];
  /** The files of each program's bundle, its entry and chunks (bundlePrograms' `outputs`). */
  outputs: Bundles['outputs'];
  /** lintian's output and exit status; null when it was skipped. */
  lintian: { status: number; output: string } | null;
}

/** Throws with lintian's output unless it ran on the package and found no error or warning. */
export function assertLintianClean(result: PackageResult): void {
  if (!result.lintian) throw new Error(`lintian was not run on ${basename(result.deb)}`);
  if (result.lintian.status !== 0)
    throw new Error(`lintian on ${basename(result.deb)}: exit ${result.lintian.status}\n${result.lintian.output}`);
}

/** Builds the package into `outDir` and runs lintian on it. */
export async function buildPackage(
  options: { revision?: number; outDir?: string; snapshot?: boolean; lintian?: boolean } = {},
): Promise<PackageResult> {
  const revision = options.revision ?? 1;
  const outDir = options.outDir ?? join(ROOT, 'dist/package');
  const { version: upstream } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const [commit, committed] = run('git', ['log', '-1', '--format=%H %ct']).trim().split(' ') as [string, string];
  const version = `${upstream}-${revision}${options.snapshot ? snapshotSuffix(commit, Number(committed)) : ''}`;
  const arch = run('dpkg', ['--print-architecture']).trim();
  const stage = await mkdtemp(join(tmpdir(), 'spark-ts-deb-'));
  // The package's root is the host's /: mkdtemp made it 0700.
  await chmod(stage, 0o755);
  try {
    const { thirdParty, modules, outputs } = await bundlePrograms(ROOT, join(stage, LIB), arch);
    const addon = zeromqAddon(join(ROOT, 'node_modules/zeromq'), arch);

    // Commands: spark for operators, the services and the build helper for the units and sudo.
    await put(stage, '/usr/bin/spark', launcher('cli', CLI_ENTRY), 0o755);
    for (const service of SERVICES) {
      await put(stage, `/usr/sbin/spark-${service}`, launcher(service, `${LIB}/node_modules/@spark/${service}/dist/main.js`), 0o755);
    }
    await put(stage, PACKAGED_BUILD_HELPER, launcher(null, `${LIB}/node_modules/@spark/build-helper/dist/main.js`), 0o755);
    await put(stage, `${LIB}/setup-host`, await readFile(join(ROOT, 'deploy/setup-host.sh')), 0o755);
    await put(stage, '/usr/share/spark-ts/logrotate/spark', await readFile(join(ROOT, 'deploy/logrotate/spark')));

    // systemd, sudo, sysusers.d, tmpfiles.d.
    for (const unit of [
      'spark-connector.service',
      'spark-builder@.service',
      'spark-signer.service',
      'spark-uploader.service',
      'spark.target',
    ]) {
      await put(stage, `/usr/lib/systemd/system/${unit}`, packagePaths(await readFile(join(ROOT, 'deploy/systemd', unit), 'utf8')));
    }
    await put(
      stage,
      '/etc/sudoers.d/10spark-builder',
      packagePaths(await readFile(join(ROOT, 'deploy/sudoers/10spark-builder'), 'utf8')),
      0o440,
    );
    await put(stage, '/usr/lib/sysusers.d/spark-ts.conf', await readFile(join(ROOT, 'deploy/debian/sysusers.conf')));
    await put(stage, '/usr/lib/tmpfiles.d/spark-ts.conf', await readFile(join(ROOT, 'deploy/debian/tmpfiles.conf')));

    // Manual pages and completion, from the commands' own --help.
    const pages = await mkdtemp(join(tmpdir(), 'spark-ts-man-'));
    try {
      run(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', join(ROOT, 'tools/src/man/build.ts'), pages]);
      await put(stage, '/usr/share/man/man1/spark.1.gz', gzipSync(await readFile(join(pages, 'spark.1')), { level: 9 }));
      for (const service of SERVICES) {
        await put(
          stage,
          `/usr/share/man/man8/spark-${service}.8.gz`,
          gzipSync(await readFile(join(pages, `spark-${service}.8`)), { level: 9 }),
        );
      }
      await put(stage, '/usr/share/bash-completion/completions/spark', await readFile(join(pages, 'spark.bash-completion')));
    } finally {
      await rm(pages, { recursive: true, force: true });
    }

    // Documentation, copyright, changelog, lintian overrides.
    const doc = '/usr/share/doc/spark-ts';
    await put(stage, `${doc}/README.md.gz`, gzipSync(await readFile(join(ROOT, 'README.md')), { level: 9 }));
    await put(stage, `${doc}/copyright`, copyright(upstream, thirdParty));
    await put(stage, `${doc}/changelog.Debian.gz`, gzipSync(changelog(version, commit, Number(committed)), { level: 9 }));
    await put(stage, '/usr/share/lintian/overrides/spark-ts', await readFile(join(ROOT, 'deploy/debian/lintian-overrides')));

    // DEBIAN/: control, conffiles, maintainer scripts, md5sums.
    const installedKiB = Number(run('du', ['-sk', '--apparent-size', stage]).split('\t')[0]);
    await put(stage, '/DEBIAN/control', control({ version, arch, installedKiB, glibc: addon.glibc }));
    await put(stage, '/DEBIAN/conffiles', '/etc/sudoers.d/10spark-builder\n');
    for (const script of ['preinst', 'postinst', 'prerm', 'postrm']) {
      await copyFile(join(ROOT, 'deploy/debian', script), join(stage, 'DEBIAN', script));
      await chmod(join(stage, 'DEBIAN', script), 0o755);
    }
    await put(stage, '/DEBIAN/md5sums', await md5sums(stage));

    await mkdir(outDir, { recursive: true });
    const deb = join(outDir, `spark-ts_${version}_${arch}.deb`);
    run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb]);
    if (options.lintian === false) return { deb, modules, outputs, lintian: null };
    const lintian = spawnSync('lintian', ['--fail-on', 'error,warning', '--info', deb], { encoding: 'utf8' });
    const output = lintian.error ? `lintian: ${lintian.error.message}` : `${lintian.stdout}${lintian.stderr}`;
    return { deb, modules, outputs, lintian: { status: lintian.status ?? 1, output } };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      revision: { type: 'string' },
      out: { type: 'string' },
      snapshot: { type: 'boolean', default: false },
      'no-lintian': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const revision = values.revision === undefined ? 1 : Number(values.revision);
  if (!Number.isInteger(revision) || revision < 1) {
    console.error(`npm run package: --revision must be a whole number ≥ 1, not ${JSON.stringify(values.revision)}`);
    process.exit(64);
  }
  const result = await buildPackage({
    revision,
    outDir: values.out === undefined ? undefined : resolve(values.out),
    snapshot: values.snapshot,
    lintian: !values['no-lintian'],
  });
  console.log(result.deb);
  if (result.lintian) {
    if (result.lintian.output) console.log(result.lintian.output.trimEnd());
    console.log(result.lintian.status === 0 ? 'lintian: no errors or warnings' : `lintian: exit ${result.lintian.status}`);
    process.exitCode = result.lintian.status;
  }
}
