/*
 * Build output as debspawn relays it from a pseudo-terminal: CRLF line ends,
 * SGR colours, OSC 8 hyperlinks (GCC's), coloured GCC warnings with their
 * source excerpts, long link lines, progress lines redrawn with bare CRs and
 * UTF-8 quotes. Generated from a fixed seed, so every run prints the same bytes.
 */

const ESC = '\x1b';
const CRLF = '\r\n';
const bold = (text: string) => `${ESC}[01m${ESC}[K${text}${ESC}[m${ESC}[K`;
const magenta = (text: string) => `${ESC}[01;35m${ESC}[K${text}${ESC}[m${ESC}[K`;
const link = (url: string, text: string) => `${ESC}]8;;${url}${ESC}\\${text}${ESC}]8;;${ESC}\\`;

/** A small deterministic generator (mulberry32), so the output does not depend on Math.random. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FILES = ['parser', 'module', 'output', 'config', 'main', 'buffer', 'hash', 'io', 'lexer', 'table'];
const VARIABLES = ['length', 'offset', 'count', 'flags', 'state'];

/** What one block holds, for the benchmark to check the relay found everything. */
export interface PtyBlock {
  text: string;
  /** GCC warnings in the block (each preceded by its `In function` line). */
  warnings: number;
}

/** One block of about `approxBytes` bytes of pseudo-terminal build output (the last line end is left to the caller's `yes`). */
export function ptyBlock(approxBytes: number, seed = 16): PtyBlock {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const lines: string[] = [];
  let size = 0;
  let warnings = 0;
  const push = (line: string) => {
    lines.push(line);
    size += Buffer.byteLength(line) + 2;
  };
  while (size < approxBytes) {
    const roll = random();
    const file = pick(FILES);
    if (roll < 0.5) {
      push(
        `x86_64-linux-gnu-gcc -DHAVE_CONFIG_H -I. -I.. -Wdate-time -D_FORTIFY_SOURCE=2 -g -O2 -ffile-prefix-map=/build/reproducible-path/hello-2.12=. -fstack-protector-strong -fstack-clash-protection -Wformat -Werror=format-security -fcf-protection -Wall -Wextra -c src/${file}.c -o build/${file}.o`,
      );
    } else if (roll < 0.6) {
      const variable = pick(VARIABLES);
      const line = 10 + Math.floor(random() * 900);
      const column = 5 + Math.floor(random() * 20);
      const option = link('https://gcc.gnu.org/onlinedocs/gcc/Warning-Options.html#index-Wunused-variable', magenta('-Wunused-variable'));
      push(`${bold(`src/${file}.c:`)} In function ‘${bold(`${file}_read`)}’:`);
      push(`${bold(`src/${file}.c:${line}:${column}:`)} ${magenta('warning: ')}unused variable ‘${bold(variable)}’ [${option}]`);
      push(`  ${line} |   int ${magenta(variable)};`);
      push(`      |       ${magenta('^~~~~~')}`);
      warnings++;
    } else if (roll < 0.7) {
      push(`${ESC}[1mdpkg-buildpackage: ${ESC}[32minfo${ESC}[0m: building hello using existing ./hello_2.12.orig.tar.gz`);
    } else if (roll < 0.78) {
      const test = `tests/${file}-${Math.floor(random() * 100)}`;
      push(`${link(`file:///build/reproducible-path/hello-2.12/${test}.log`, `${ESC}[0;32mPASS${ESC}[m`)}: ${test}.sh`);
    } else if (roll < 0.86) {
      const steps = Array.from({ length: 20 }, (_, i) => `Reading package lists... ${i * 5}%`);
      push(`${steps.join('\r')}\rReading package lists... Done`);
    } else if (roll < 0.9) {
      const objects = FILES.map((name) => `build/${name}.o`).join(' ');
      push(
        `/bin/bash ../libtool --tag=CC --mode=link x86_64-linux-gnu-gcc -g -O2 -Wl,-z,relro -Wl,-z,now -o hello ${Array.from({ length: 25 }, () => objects).join(' ')} -lm -lpthread`,
      );
    } else {
      push(`make[${1 + Math.floor(random() * 3)}]: Entering directory '/build/reproducible-path/hello-2.12/src/${file}'`);
    }
  }
  // `yes` ends each repetition with LF: the last line ends in CR here, so every line of the output ends in CRLF.
  return { text: `${lines.join(CRLF)}\r`, warnings };
}
