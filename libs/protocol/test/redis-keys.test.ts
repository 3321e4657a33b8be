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

/** The code of a file without its comments: comments name keys to explain them, which is fine. */
function withoutComments(text: string, file: string): string {
  if (file.endsWith('.sh')) return text.replace(/^\s*#.*$/gm, '');
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
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
  return new RegExp(`(?<=[}\\w])${escaped}${tail.endsWith(':') ? '' : '(?![\\w-])'}`);
}

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
    const fragments = definitions().map(([name, pattern]) => [name, fragment(pattern)] as const);
    const found: string[] = [];
    for (const file of await sourceFiles()) {
      if (OWNERS.has(file)) continue;
      const code = withoutComments(await readFile(join(REPO, file), 'utf8'), file);
      for (const [name, regex] of fragments) {
        const match = regex.exec(code);
        if (match) found.push(`${file}: ${name} spelled as …${code.slice(Math.max(0, match.index - 20), match.index + 30)}…`);
      }
    }
    assert.deepEqual(found, []);
  });

  it('finds a key spelled outside the module (the check can fail)', () => {
    const code = withoutComments('await redis.get(`${prefix}:signer-rounds:${uuid}`); // `${p}:jobs:x` in a comment is fine\n', 'x.ts');
    const hits = definitions().filter(([, pattern]) => fragment(pattern).test(code));
    assert.deepEqual(
      hits.map(([name]) => name),
      ['signerRounds'],
    );
    assert.ok(fragment(queueKeysPattern('PREFIX', 'build')).test("redis.hset('spark:build:1', 'a', 'b')"));
    assert.ok(!fragment(REDIS_KEY_FAMILIES.lighthouseStatus.pattern('PREFIX')).test('`${p}:lighthouse-wake`'));
  });
});
