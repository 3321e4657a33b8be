/**
 * `npm run package`: the .deb it builds holds the programs and the files a
 * worker host needs with the right owners and modes, nothing of the
 * development tree, control fields that pull in what the services run, passes
 * lintian, and its bundled commands run from an unpacked tree on this host's node.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodeFlags } from '@spark/config';
import { buildPackage, snapshotSuffix, type PackageResult } from '../package/build.js';

interface Entry {
  mode: string;
  owner: string;
  path: string;
}

function contents(deb: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  for (const line of execFileSync('dpkg-deb', ['--contents', deb], { encoding: 'utf8', maxBuffer: 16 << 20 })
    .trim()
    .split('\n')) {
    const [mode, owner, , , , path] = line.split(/\s+/);
    const clean = path!.replace(/^\./, '').replace(/\/$/, '') || '/';
    entries.set(clean, { mode: mode!, owner: owner!, path: clean });
  }
  return entries;
}

describe('npm run package', { timeout: 600_000 }, () => {
  let out: string;
  let result: PackageResult;
  let files: Map<string, Entry>;
  let unpacked: string;
  const lib = '/usr/lib/spark-ts/node_modules/@spark';

  before(async () => {
    out = await mkdtemp(join(tmpdir(), 'spark-package-test-'));
    result = await buildPackage({ revision: 7, outDir: out });
    files = contents(result.deb);
    unpacked = join(out, 'root');
    execFileSync('dpkg-deb', ['-x', result.deb, unpacked]);
  });
  after(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('is named spark-ts_<version>-<revision>_<arch>.deb', () => {
    const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
    assert.equal(result.deb, join(out, `spark-ts_0.1.0-7_${arch}.deb`));
  });

  it('has the commands, units, sudoers rule, sysusers and tmpfiles snippets, pages and completion, with their owners and modes', () => {
    const expected: [string, string][] = [
      ['/', 'drwxr-xr-x'],
      ['/etc/sudoers.d/10spark-builder', '-r--r-----'],
      ['/usr/bin/spark', '-rwxr-xr-x'],
      ['/usr/sbin/spark-build-helper', '-rwxr-xr-x'],
      [`${lib}/build-helper/dist/main.js`, '-rwxr-xr-x'],
      [`${lib}/build-helper/sandbox/bin/systemd-nspawn`, '-rwxr-xr-x'],
      ['/usr/lib/spark-ts/setup-host', '-rwxr-xr-x'],
      ['/usr/lib/systemd/system/spark.target', '-rw-r--r--'],
      ['/usr/lib/systemd/system/spark-builder@.service', '-rw-r--r--'],
      ['/usr/lib/sysusers.d/spark-ts.conf', '-rw-r--r--'],
      ['/usr/lib/tmpfiles.d/spark-ts.conf', '-rw-r--r--'],
      ['/usr/share/man/man1/spark.1.gz', '-rw-r--r--'],
      ['/usr/share/bash-completion/completions/spark', '-rw-r--r--'],
      ['/usr/share/doc/spark-ts/copyright', '-rw-r--r--'],
      ['/usr/share/doc/spark-ts/changelog.Debian.gz', '-rw-r--r--'],
    ];
    for (const service of ['connector', 'builder', 'signer', 'uploader']) {
      expected.push([`/usr/sbin/spark-${service}`, '-rwxr-xr-x'], [`/usr/share/man/man8/spark-${service}.8.gz`, '-rw-r--r--']);
      expected.push([`/usr/lib/systemd/system/spark-${service}${service === 'builder' ? '@' : ''}.service`, '-rw-r--r--']);
    }
    for (const [path, mode] of expected) {
      const entry = files.get(path);
      assert.ok(entry, `${path} is not in the package`);
      assert.equal(entry.mode, mode, path);
    }
    // spark's entry runs (it starts with #!); the chunks it imports are data to it, as every other module.
    assert.equal(files.get(`${lib}/cli/dist/main.js`)?.mode, '-rwxr-xr-x');
    const chunks = [...files.values()].filter((entry) => entry.path.startsWith(`${lib}/cli/dist/chunks/`));
    assert.ok(chunks.length > 1, 'spark has no chunks');
    assert.deepEqual(
      chunks.filter((entry) => !entry.path.endsWith('.js') || entry.mode !== '-rw-r--r--'),
      [],
    );
    // dpkg-deb --root-owner-group: every file root's, the build helper's whole tree included.
    const notRoot = [...files.values()].filter((entry) => entry.owner !== 'root/root');
    assert.deepEqual(notRoot, []);
  });

  it('holds nothing of the development tree', () => {
    const dev = [...files.keys()].filter((path) =>
      /\/node_modules\/(nx|@nx|eslint|@eslint|typescript|tsx|esbuild|vitest|prettier|@spark\/(testing|tools))(\/|$)|\.ts$|\.map$/.test(
        path,
      ),
    );
    assert.deepEqual(dev, []);
    // The npm packages in the package, each by its package.json: the six programs and what cannot be bundled.
    const shipped = [...files.keys()].flatMap(
      (path) => /^\/usr\/lib\/spark-ts\/node_modules\/((?:@[^/]+\/)?[^/]+)\/package\.json$/.exec(path)?.[1] ?? [],
    );
    const apps = ['build-helper', 'builder', 'cli', 'connector', 'signer', 'uploader'].map((app) => `@spark/${app}`);
    assert.deepEqual(shipped.sort(), ['@bull-board/ui', ...apps, 'cmake-ts', 'openpgp', 'zeromq']);
  });

  it('leaves out what no program runs: @opentelemetry/api, cron-parser and luxon (tools/package/bundle.ts UNUSED_PACKAGES)', async () => {
    for (const app of ['connector', 'builder', 'signer', 'uploader'] as const) {
      const modules = result.modules[app];
      assert.ok(
        modules.some((path) => /node_modules\/(bullmq|prom-client)\//.test(path)),
        `${app} bundles bullmq and prom-client`,
      );
      assert.deepEqual(
        modules.filter((path) => /node_modules\/(@opentelemetry\/api|cron-parser|luxon)\//.test(path)),
        [],
        app,
      );
      const bundle = await readFile(join(unpacked, lib, app, 'dist/main.js'), 'utf8');
      assert.match(bundle, /cron-parser is not in the spark-ts package: its programs schedule no repeatable BullMQ job/, app);
    }
  });

  it("bundles no module of libs/testing or tools/, and names the package's build helper", async () => {
    for (const app of ['cli', 'connector', 'builder', 'signer', 'uploader', 'build-helper'] as const) {
      // The bundled source files, from esbuild's metafile (paths relative to the repository).
      const modules = result.modules[app];
      assert.ok(
        modules.some((path) => path.startsWith('libs/protocol/src/')),
        `${app} bundles no module of libs/protocol: ${modules.join(', ')}`,
      );
      assert.deepEqual(
        modules.filter((path) => /^(libs\/testing|tools)\//.test(path)),
        [],
        app,
      );
      for (const { file } of result.outputs[app]) {
        const bundle = await readFile(join(unpacked, lib, app, file), 'utf8');
        assert.doesNotMatch(bundle, /\/usr\/local\/sbin\/spark-build-helper/, `${app} ${file}`);
      }
    }
    const builder = await readFile(join(unpacked, lib, 'builder/dist/main.js'), 'utf8');
    assert.match(builder, /"\/usr\/sbin\/spark-build-helper"/);
    const sudoers = await readFile(join(unpacked, 'etc/sudoers.d/10spark-builder'), 'utf8');
    assert.match(sudoers, /^spark-builder ALL=\(root\) NOPASSWD: \/usr\/sbin\/spark-build-helper$/m);
    const unit = await readFile(join(unpacked, 'usr/lib/systemd/system/spark-signer.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/sbin\/spark-signer --config \/etc\/laniakea\/spark.toml$/m);
  });

  it('has bundles of Latin-1 text only, which V8 holds one byte a character', async () => {
    // One character beyond Latin-1 anywhere (a comment, a string, a regular expression) makes V8 hold the whole
    // source, which it keeps for lazy compilation, as UTF-16: twice the memory, in every process.
    // Every .js the package ships of the programs: each bundle's entry and spark's chunks.
    const scripts = [...files.keys()].filter((path) => path.startsWith(`${lib}/`) && path.endsWith('.js'));
    assert.ok(
      scripts.some((path) => path.startsWith(`${lib}/cli/dist/chunks/`)),
      scripts.join(', '),
    );
    for (const path of scripts) {
      const bundle = await readFile(join(unpacked, path), 'utf8');
      const beyond = /[\u0100-\u{10ffff}]/u.exec(bundle);
      if (beyond) {
        const code = beyond[0].codePointAt(0)!.toString(16).toUpperCase();
        const around = bundle.slice(Math.max(0, beyond.index - 60), beyond.index + 20);
        assert.fail(`${path} has U+${code} at offset ${beyond.index}, beyond Latin-1: …${around}…`);
      }
    }
  });

  it("splits spark's bundle by command: spark run loads neither the dashboard's nor the queue library's code", () => {
    const outputs = new Map(result.outputs.cli.map((output) => [output.file, output]));
    // Every file of the bundle is in the package, and the package holds no other file of it.
    const shipped = [...files.keys()].filter((path) => path.startsWith(`${lib}/cli/dist/`) && path.endsWith('.js'));
    assert.deepEqual(shipped.map((path) => path.slice(`${lib}/cli/`.length)).sort(), [...outputs.keys()].sort());
    // What node loads for a command: the entry, the chunk its import() names, and what they import, transitively.
    const loaded = (...files: string[]) => {
      const seen = new Set<string>();
      const next = [...files];
      for (let file = next.pop(); file !== undefined; file = next.pop()) {
        if (seen.has(file)) continue;
        seen.add(file);
        next.push(...outputs.get(file)!.imports);
      }
      return [...seen].flatMap((file) => outputs.get(file)!.inputs);
    };
    // The chunk holding a command's module: the one its import() loads (each source file is in one output).
    const commandChunk = (source: string) => {
      const file = [...outputs.values()].find((output) => output.inputs.includes(source))?.file;
      assert.ok(file && file !== 'dist/main.js', `no chunk of its own holds ${source}`);
      return file;
    };
    const heavy = /node_modules\/(express|@bull-board|bullmq|ioredis)\//;
    const run = loaded('dist/main.js', commandChunk('apps/cli/src/supervisor/run-command.ts'));
    assert.ok(run.includes('apps/cli/src/supervisor/run-command.ts'));
    assert.deepEqual(
      run.filter((input) => heavy.test(input)),
      [],
    );
    assert.deepEqual(
      loaded('dist/main.js').filter((input) => heavy.test(input)),
      [],
      '--help and --version',
    );
    const dashboard = loaded('dist/main.js', commandChunk('apps/cli/src/dashboard/dashboard-command.ts'));
    assert.ok(dashboard.some((input) => /node_modules\/express\//.test(input)));
  });

  it('ships the one zeromq addon, stripped, that Debian 12 can load', () => {
    const addons = [...files.keys()].filter((path) => path.endsWith('.node'));
    assert.equal(addons.length, 1, addons.join(', '));
    const symbols = execFileSync('objdump', ['-T', join(unpacked, addons[0]!)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const glibc = [...symbols.matchAll(/GLIBC_2\.(\d+)/g)].map((match) => Number(match[1]));
    assert.ok(Math.max(...glibc) <= 36, `needs GLIBC_2.${Math.max(...glibc)}`);
  });

  it('has control fields that pull in what the services run, and the sudoers rule as a conffile', () => {
    const field = (name: string) => execFileSync('dpkg-deb', ['--field', result.deb, name], { encoding: 'utf8' }).trim();
    assert.equal(field('Package'), 'spark-ts');
    assert.equal(field('Version'), '0.1.0-7');
    const depends = field('Depends').split(/,\s*/);
    for (const needed of ['nodejs (>= 20.19)', 'redis-server (>= 5:7)', 'debspawn', 'sudo', 'dpkg-dev', 'systemd-container', 'git']) {
      assert.ok(depends.includes(needed), `Depends lacks ${needed}: ${depends.join(', ')}`);
    }
    const info = execFileSync('dpkg-deb', ['--info', result.deb], { encoding: 'utf8' });
    for (const script of ['preinst', 'postinst', 'prerm', 'postrm', 'conffiles', 'md5sums'])
      assert.match(info, new RegExp(`\\b${script}\\b`));
    const conffiles = execFileSync('dpkg-deb', ['--info', result.deb, 'conffiles'], { encoding: 'utf8' });
    assert.equal(conffiles, '/etc/sudoers.d/10spark-builder\n');
  });

  it('passes lintian (errors and warnings; overrides explained in deploy/debian/lintian-overrides)', () => {
    assert.equal(result.lintian?.status, 0, result.lintian?.output);
  });

  it('runs spark --version and --help and each service --version from the unpacked tree with the system node', () => {
    const node = (script: string, ...args: string[]) =>
      execFileSync('/usr/bin/node', [join(unpacked, script), ...args], { encoding: 'utf8' });
    assert.equal(node(`${lib}/cli/dist/main.js`, '--version'), 'spark 0.1.0\n');
    assert.match(node(`${lib}/cli/dist/main.js`, '--help'), /^usage: spark <command> \[options\]/);
    assert.match(node(`${lib}/cli/dist/main.js`, 'status', '--help'), /^usage:\n {2}status \[--config FILE\]/);
    // A command from its chunk: config check of a missing file exits 66 (EX_NOINPUT) naming it.
    const missing = spawnSync(
      '/usr/bin/node',
      [join(unpacked, lib, 'cli/dist/main.js'), 'config', 'check', '--config', join(out, 'none.toml')],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(missing.status, 66, missing.stderr);
    assert.match(missing.stderr, /none\.toml: cannot read config: file not found/);
    for (const service of ['connector', 'builder', 'signer', 'uploader']) {
      assert.equal(node(`${lib}/${service}/dist/main.js`, '--version'), `spark-${service} 0.1.0\n`);
    }
    // The launchers name the installed tree, each with its program's flags (libs/config nodeFlags: what spark run gives them).
    assert.equal(
      readFileSync(join(unpacked, 'usr/bin/spark'), 'utf8'),
      `#!/bin/sh\nexec /usr/bin/node --lite-mode --no-expose-wasm --max-semi-space-size=1 ${lib}/cli/dist/main.js "$@"\n`,
    );
    for (const service of ['connector', 'builder', 'signer', 'uploader'] as const) {
      assert.equal(
        readFileSync(join(unpacked, `usr/sbin/spark-${service}`), 'utf8'),
        `#!/bin/sh\nexec /usr/bin/node ${nodeFlags(service).join(' ')} ${lib}/${service}/dist/main.js "$@"\n`,
        service,
      );
    }
  });

  it("finds the services the way spark run does, by package name from the CLI's bundle", () => {
    // spark run resolves @spark/<service>/main from its own bundle (run-command.ts); the builder the helper's systemd-nspawn.
    const probe = `for (const name of ['connector', 'builder', 'signer', 'uploader', 'build-helper/systemd-nspawn']) console.log(import.meta.resolve(name.includes('/') ? '@spark/' + name : '@spark/' + name + '/main'));`;
    const cliDir = join(unpacked, lib, 'cli/dist');
    const resolved = execFileSync('/usr/bin/node', ['--input-type=module', '-e', probe], { cwd: cliDir, encoding: 'utf8' })
      .trim()
      .split('\n');
    assert.deepEqual(
      resolved.map((url) => new URL(url).pathname.slice(unpacked.length)),
      [
        ...['connector', 'builder', 'signer', 'uploader'].map((name) => `${lib}/${name}/dist/main.js`),
        `${lib}/build-helper/sandbox/bin/systemd-nspawn`,
      ],
    );
  });
});

describe('snapshot versions (npm run package -- --snapshot, what deploy/install.sh builds)', () => {
  const newer = (a: string, b: string) => spawnSync('dpkg', ['--compare-versions', a, 'gt', b]).status === 0;

  it('names the commit and its time in UTC, and a later commit sorts later', () => {
    const first = `0.1.0-1${snapshotSuffix('618a62b0123456789abcdef0123456789abcdef0', Date.UTC(2026, 11, 7, 23, 5, 9) / 1000)}`;
    const second = `0.1.0-1${snapshotSuffix('0123456789abcdef0123456789abcdef01234567', Date.UTC(2026, 11, 8, 1, 0, 0) / 1000)}`;
    assert.equal(first, '0.1.0-1+git20261207.230509.618a62b01234');
    assert.ok(newer(second, first), `${second} > ${first}`);
  });

  it('sorts after the release it is built on and before the next revision', () => {
    const snapshot = `0.1.0-1${snapshotSuffix('618a62b0123456789abcdef0123456789abcdef0', 1_800_000_000)}`;
    assert.ok(newer(snapshot, '0.1.0-1'));
    assert.ok(newer('0.1.0-2', snapshot));
  });
});
