import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  prefixPattern,
  QUEUE_NAMES,
  queueKeysPattern,
  REDIS_CHANNELS,
  REDIS_KEY_FAMILIES,
  type RedisChannelName,
  type RedisKeyFamilyName,
} from '@spark/protocol';

/*
 * redis-keys.ts is the one place that spells a Redis key, key pattern or
 * channel: the ACL rules are built from it, so a key spelled anywhere else
 * could be renamed without its rule (and be refused by Redis in production
 * only). This test looks for each key's fragment (`:signer-rounds:`,
 * `:build:`, …), derived from the module itself, in the code of every
 * project.
 */

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The module, and this test's own samples of what it must find. */
const OWNERS = new Set(['libs/protocol/src/redis-keys.ts', 'libs/protocol/test/redis-keys.test.ts']);
const ROOTS = ['apps', 'libs', 'tools', 'scripts', 'deploy'];
const SKIP = new Set(['node_modules', 'dist', '.nx', 'tmp']);

/** Every source file below the roots, relative to the repository. */
async function sourceFiles(): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (SKIP.has(entry.name)) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (/\.(ts|mts|js|mjs|sh)$/.test(entry.name) || entry.name === 'debspawn') found.push(relative(REPO, path));
    }
  };
  for (const root of ROOTS) await walk(join(REPO, root));
  return found.sort();
}

/**
 * The code of a file without its comments (comments name keys to explain
 * them, which is fine), each comment blanked out so that lines keep their
 * numbers.
 */
function withoutComments(text: string, file: string): string {
  if (file.endsWith('.sh')) return text.replace(/^\s*#.*$/gm, '');
  return text.replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

/**
 * The fragment of a key or pattern that names it, as a regular expression:
 * `P:signer-rounds:*` → `:signer-rounds:`; `P:archive-targets` →
 * `:archive-targets` not followed by more of a name. Preceded by the end of
 * a prefix (`}` of `${prefix}`, or a letter of a literal one).
 */
function fragment(pattern: string): RegExp {
  const P = 'PREFIX';
  assert.ok(pattern.startsWith(`${P}:`), `${pattern} is under the prefix`);
  const tail = pattern.slice(P.length).replace(/\*$/, '');
  const escaped = tail.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<=[}\\w])${escaped}${tail.endsWith(':') ? '' : '(?![\\w-])'}`, 'g');
}

/**
 * A key built by hand from the prefix, whatever follows it: `${prefix}:`,
 * `${config.queuePrefix}:`, `${queue.opts.prefix ?? ''}:`, `${p}:` in a
 * template (a colon and a space is prose, not a key), or `prefix + ':'`. This catches the keys the fragments cannot:
 * those whose name is itself interpolated (`${prefix}:${queue}:wait`), and
 * keys of a name the module does not define at all.
 */
const PREFIX_JOINED = /\$\{\s*(?:[\w$?.]*\.)?(?:\w*[pP]refix|p)(?:\s*\?\?\s*[^}]*)?\s*\}:(?!\s)|\b\w*[pP]refix\s*\+\s*['"`]:/g;

/** Every key pattern and channel the module defines, by a name for the message. */
function definitions(): [string, string][] {
  const P = 'PREFIX';
  return [
    ...(Object.keys(REDIS_KEY_FAMILIES) as RedisKeyFamilyName[]).map((name): [string, string] => [
      name,
      REDIS_KEY_FAMILIES[name].pattern(P),
    ]),
    ...(Object.keys(REDIS_CHANNELS) as RedisChannelName[]).map((name): [string, string] => [`channel ${name}`, REDIS_CHANNELS[name](P)]),
    ...QUEUE_NAMES.map((queue): [string, string] => [`queue ${queue}`, queueKeysPattern(P, queue)]),
  ];
}

/** What to look for: each definition's fragment, and a key joined to the prefix by hand. */
function detectors(): (readonly [string, RegExp])[] {
  return [...definitions().map(([name, pattern]) => [name, fragment(pattern)] as const), ['a key built from the prefix', PREFIX_JOINED]];
}

/** Where in `code` (of `file`) a key is spelled: `file:line: what spelled as …code…`, one per hit. */
function spelledKeys(code: string, file: string): string[] {
  const found: string[] = [];
  for (const [name, regex] of detectors()) {
    for (const match of code.matchAll(regex)) {
      const line = code.slice(0, match.index).split('\n').length;
      const text = code.split('\n')[line - 1]?.trim() ?? '';
      found.push(`${file}:${line}: ${name} spelled as ${match[0]} in: ${text}`);
    }
  }
  return found;
}

describe('redis-keys.ts spells every Redis key', () => {
  it('defines every key, pattern and channel under the prefix, each with its own fragment', () => {
    const seen = new Map<string, string>();
    for (const [name, pattern] of definitions()) {
      const source = fragment(pattern).source;
      assert.equal(seen.get(source), undefined, `${name} and ${seen.get(source)} share ${source}`);
      seen.set(source, name);
    }
    assert.equal(prefixPattern('PREFIX'), 'PREFIX:*');
  });

  it('is the only file of any project that spells one', async () => {
    const found: string[] = [];
    for (const file of await sourceFiles()) {
      if (OWNERS.has(file)) continue;
      found.push(...spelledKeys(withoutComments(await readFile(join(REPO, file), 'utf8'), file), file));
    }
    assert.deepEqual(found, [], `spell these keys with the functions of libs/protocol/src/redis-keys.ts:\n${found.join('\n')}`);
  });

  it('finds a key spelled outside the module, naming file and line (the check can fail)', () => {
    const code = withoutComments(
      '/* a comment\n * over `${p}:jobs:x` lines */\nawait redis.get(`${prefix}:signer-rounds:${uuid}`); // `${p}:jobs:x` in a comment is fine\n',
      'x.ts',
    );
    assert.deepEqual(spelledKeys(code, 'x.ts'), [
      'x.ts:3: signerRounds spelled as :signer-rounds: in: await redis.get(`${prefix}:signer-rounds:${uuid}`);',
      'x.ts:3: a key built from the prefix spelled as ${prefix}: in: await redis.get(`${prefix}:signer-rounds:${uuid}`);',
    ]);
    assert.equal(spelledKeys("redis.hset('spark:build:1', 'a', 'b')", 'y.ts').length, 1);
    assert.deepEqual(spelledKeys('`${p}:lighthouse-wake`', 'z.ts'), [
      'z.ts:1: a key built from the prefix spelled as ${p}: in: `${p}:lighthouse-wake`',
    ]);
    for (const joined of [
      '`${config.queuePrefix}:${QueueName.upload}`',
      "`${queue.opts.prefix ?? ''}:${QueueName.sign}:${id}`",
      "prefix + ':wait'",
    ]) {
      assert.equal(spelledKeys(joined, 'j.ts').length, 1, joined);
    }
    for (const fine of ['`${prefix}`', '`${p.name}:`', '`spark ${prefix}: ${message}`.length', "'no prefix: here'"]) {
      assert.deepEqual(spelledKeys(fine, 'f.ts'), [], fine);
    }
  });
});
