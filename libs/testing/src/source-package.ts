import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A tiny Debian source package for tests and the demo. */
export interface SourcePackageSpec {
  /** Source and binary package name. */
  name: string;
  /** Debian version, e.g. `1.0-1` (native packages: `1.0`). */
  version: string;
  /** Extra `Build-Depends` (e.g. an unsatisfiable one for a depwait test). */
  buildDepends?: string;
  /** C source compiled by the package's build: put warnings or errors here. Default: a hello world. */
  cSource?: string;
  /** Architecture of the binary package (default `any`). */
  architecture?: string;
  /** Distribution in the changelog (default `bookworm`). */
  distribution?: string;
  /** Shell command lines the build runs after compiling (recipe lines of `build-arch`), e.g. one that floods the log. */
  buildCommands?: readonly string[];
  /** Name of a second binary package, `Architecture: all` (built by `binary-indep`): a `<name>_<version>_all.deb`. */
  indepPackage?: string;
  /**
   * Also build `<name>-dbgsym` (section debug, with the program's debug
   * symbols), as debhelper's dh_strip and dh_gencontrol do: a package that
   * debian/control does not name.
   */
  dbgsym?: boolean;
}

/** The files a source package build made. */
export interface SourcePackage {
  /** Directory holding the `.dsc` and the files it lists. */
  dir: string;
  /** Absolute path of the `.dsc`. */
  dsc: string;
  /** Names of every file of the source package (the `.dsc` included). */
  files: string[];
}

const HELLO = `#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n`;

/**
 * Writes a native source package that needs nothing but build-essential (no
 * debhelper: `debian/rules` uses dpkg's own tools) and runs `dpkg-source -b`
 * on it in `dir`. The build compiles `hello.c` with `-Wall -Wextra`.
 */
export async function makeSourcePackage(dir: string, spec: SourcePackageSpec): Promise<SourcePackage> {
  const tree = join(dir, `${spec.name}-${spec.version.replace(/^\d+:/, '').replace(/-[^-]*$/, '')}`);
  const debian = join(tree, 'debian');
  await mkdir(join(debian, 'source'), { recursive: true });
  const arch = spec.architecture ?? 'any';
  await writeFile(join(tree, 'hello.c'), spec.cSource ?? HELLO);
  await writeFile(join(debian, 'source', 'format'), '3.0 (native)\n');
  await writeFile(
    join(debian, 'control'),
    `Source: ${spec.name}
Section: misc
Priority: optional
Maintainer: Spark Tests <spark-tests@example.org>
Build-Depends: ${['build-essential', spec.buildDepends].filter(Boolean).join(', ')}
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: ${spec.name}
Architecture: ${arch}
Description: tiny test package for spark-ts
 Built by spark-ts tests; prints hello.
${
  spec.indepPackage
    ? `
Package: ${spec.indepPackage}
Architecture: all
Description: tiny arch-independent test package for spark-ts
 Built by spark-ts tests; documents hello.
`
    : ''
}`,
  );
  await writeFile(
    join(debian, 'changelog'),
    `${spec.name} (${spec.version}) ${spec.distribution ?? 'bookworm'}; urgency=medium

  * Test upload.

 -- Spark Tests <spark-tests@example.org>  Thu, 26 Nov 2026 00:00:00 +0000
`,
  );
  const rules = `#!/usr/bin/make -f
PKG := ${spec.name}
DESTDIR := debian/$(PKG)

build: build-arch build-indep
build-arch build-indep:
\tgcc -Wall -Wextra -O2 -o hello hello.c
${(spec.buildCommands ?? []).map((line) => `\t${line}\n`).join('')}
clean:
\trm -rf ${['hello', spec.dbgsym ? 'hello.debug debian/$(PKG)-dbgsym' : '', 'debian/$(PKG)', spec.indepPackage ? `debian/${spec.indepPackage}` : ''].filter(Boolean).join(' ')} debian/files debian/substvars

binary: binary-arch binary-indep
binary-indep:
${
  spec.indepPackage
    ? [
        `\tinstall -D -m 0644 hello.c debian/${spec.indepPackage}/usr/share/doc/${spec.indepPackage}/hello.c`,
        `\tmkdir -p debian/${spec.indepPackage}/DEBIAN`,
        `\tdpkg-gencontrol -p${spec.indepPackage} -Pdebian/${spec.indepPackage}`,
        `\tdpkg-deb --root-owner-group --build debian/${spec.indepPackage} ..`,
        '',
      ].join('\n')
    : ''
}binary-arch: build-arch
\tinstall -D -m 0755 hello $(DESTDIR)/usr/bin/$(PKG)
\tmkdir -p $(DESTDIR)/DEBIAN
\tdpkg-gencontrol -p$(PKG) -P$(DESTDIR)
\tdpkg-deb --root-owner-group --build $(DESTDIR) ..
${
  spec.dbgsym
    ? [
        // What dh_strip and dh_gencontrol do for <pkg>-dbgsym: the package's control fields, renamed, in section debug.
        '\tobjcopy --only-keep-debug hello hello.debug',
        '\tinstall -D -m 0644 hello.debug debian/$(PKG)-dbgsym/usr/lib/debug/.build-id/00/spark.debug',
        '\tmkdir -p debian/$(PKG)-dbgsym/DEBIAN',
        '\tdpkg-gencontrol -p$(PKG) -Pdebian/$(PKG)-dbgsym -DPackage=$(PKG)-dbgsym -DSection=debug -DPriority=optional ' +
          "-DAuto-Built-Package=debug-symbols '-DDepends=$(PKG) (= $${binary:Version})' '-DDescription=debug symbols for $(PKG)'",
        '\tdpkg-deb --root-owner-group --build debian/$(PKG)-dbgsym ..',
        '',
      ].join('\n')
    : ''
}
.PHONY: build build-arch build-indep clean binary binary-arch binary-indep
`;
  await writeFile(join(debian, 'rules'), rules);
  await chmod(join(debian, 'rules'), 0o755);
  await run('dpkg-source', ['-b', tree.split('/').pop() as string], { cwd: dir });
  const files = (await readdir(dir)).filter((f) => f.startsWith(`${spec.name}_`));
  const dscName = files.find((f) => f.endsWith('.dsc'));
  if (!dscName) throw new Error(`dpkg-source made no .dsc in ${dir}`);
  return { dir, dsc: join(dir, dscName), files };
}

/**
 * Builds the package's binaries on this host with `dpkg-buildpackage -b -us -uc`
 * (`-B` for `only: 'arch'`, `-A` for `'indep'`, as debspawn's `--only`; no
 * container; for tests that need real `.deb`, `.buildinfo` and `.changes`
 * files quickly). Returns the path of the `.changes`.
 */
export async function buildBinaryLocally(
  pkg: SourcePackage,
  spec: SourcePackageSpec,
  only: 'arch' | 'indep' | 'binary' = 'binary',
): Promise<string> {
  const tree = join(pkg.dir, `${spec.name}-${spec.version.replace(/^\d+:/, '').replace(/-[^-]*$/, '')}`);
  const buildType = { arch: '-B', indep: '-A', binary: '-b' }[only];
  await run('dpkg-buildpackage', [buildType, '-us', '-uc', '-d'], { cwd: tree, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  const changes = (await readdir(pkg.dir)).find((f) => f.startsWith(`${spec.name}_`) && f.endsWith('.changes'));
  if (!changes) throw new Error(`dpkg-buildpackage made no .changes in ${pkg.dir}`);
  return join(pkg.dir, changes);
}
