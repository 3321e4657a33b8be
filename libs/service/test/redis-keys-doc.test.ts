import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import {
  QUEUE_NAMES,
  queueKeysPattern,
  REDIS_CHANNELS,
  REDIS_KEY_FAMILIES,
  type QueueName,
  type RedisChannelName,
  type RedisKeyFamilyName,
} from '@spark/protocol';
import { REDIS_GRANTS, REDIS_USERS, type RedisRoleName } from '@spark/service';

/*
 * docs/architecture.md's table of Redis keys and channels (under "Trust
 * boundary") says what each key holds and which Redis users write and read
 * it. It must name exactly the keys, patterns and channels of libs/protocol
 * redis-keys.ts, name no user where REDIS_GRANTS gives it no such right, and
 * name every right of the users whose grants are listed one by one (builder,
 * signer, uploader, dashboard): a right no row uses is one to take away, or a
 * row to add.
 */

const DOC = new URL('../../../docs/architecture.md', import.meta.url);
const HEADER = '| key or channel | holds | writes | reads |';
const P = '<p>';

/** One thing of the module: a queue's keys, a family of plain keys, or a channel. */
type Item = { kind: 'queue'; name: QueueName } | { kind: 'key'; name: RedisKeyFamilyName } | { kind: 'channel'; name: RedisChannelName };

/** Every key pattern and channel of the module, as the table spells it (prefix `<p>`). */
function moduleItems(): Map<string, Item> {
  const items = new Map<string, Item>();
  for (const name of QUEUE_NAMES) items.set(queueKeysPattern(P, name), { kind: 'queue', name });
  for (const name of Object.keys(REDIS_KEY_FAMILIES) as RedisKeyFamilyName[]) {
    items.set(REDIS_KEY_FAMILIES[name].pattern(P), { kind: 'key', name });
  }
  for (const name of Object.keys(REDIS_CHANNELS) as RedisChannelName[]) items.set(REDIS_CHANNELS[name](P), { kind: 'channel', name });
  return items;
}

/**
 * Whether `role` may write or read `item` under REDIS_GRANTS (redis-acl.ts
 * turns a grant into ACL rules; redis-acl.test.ts checks those on a real
 * Redis). Writing a channel is publishing, reading it listening: an ACL
 * grants both or neither.
 */
function allows(role: RedisRoleName, item: Item, access: 'writes' | 'reads'): boolean {
  const grant = REDIS_GRANTS[role];
  if (grant.scope === 'read-write') return true;
  if (grant.scope === 'read') return access === 'reads' && item.kind !== 'channel';
  switch (item.kind) {
    case 'queue':
      return grant.queues.includes(item.name);
    case 'key':
      return grant.keys.includes(item.name) || (access === 'reads' && grant.readKeys.includes(item.name));
    case 'channel':
      return grant.channels.includes(item.name);
  }
}

interface Row {
  line: number;
  key: string;
  writes: string[];
  reads: string[];
}

/** The roles a cell names: `connector (feeds it), admin (`spark cancel`)` → connector, admin; `—` → none. */
function rolesOf(cell: string): string[] {
  return cell
    .replace(/\([^)]*\)/g, '')
    .split(',')
    .map((role) => role.trim())
    .filter((role) => role !== '' && role !== '—');
}

/** The rows of the table in `text`, or an error saying where it is missing or malformed. */
function parseTable(text: string): Row[] {
  const lines = text.split('\n');
  const start = lines.indexOf(HEADER);
  assert.notEqual(start, -1, `no table headed ${HEADER} in docs/architecture.md`);
  const rows: Row[] = [];
  for (let index = start + 2; index < lines.length && lines[index]?.startsWith('|'); index++) {
    const line = lines[index] as string;
    const cells = line.split('|').slice(1, -1);
    assert.equal(cells.length, 4, `docs/architecture.md:${index + 1}: ${cells.length} cells, expected 4: ${line}`);
    const key = /`([^`]+)`/.exec(cells[0] as string)?.[1];
    assert.ok(key, `docs/architecture.md:${index + 1}: the first cell names no key in backquotes: ${line}`);
    rows.push({ line: index + 1, key, writes: rolesOf(cells[2] as string), reads: rolesOf(cells[3] as string) });
  }
  return rows;
}

/** What is wrong with the table in `text`, one line each (`docs/architecture.md:<line>: …`); empty when it is right. */
function tableProblems(text: string): string[] {
  const items = moduleItems();
  const rows = parseTable(text);
  const problems: string[] = [];
  const at = (row: Row) => `docs/architecture.md:${row.line}: ${row.key}`;
  const seen = new Set<string>();
  for (const row of rows) {
    const item = items.get(row.key);
    if (!item) problems.push(`${at(row)} is no key, pattern or channel of libs/protocol/src/redis-keys.ts`);
    if (seen.has(row.key)) problems.push(`${at(row)} has a row already`);
    seen.add(row.key);
    for (const access of ['writes', 'reads'] as const) {
      for (const role of row[access]) {
        if (!(role in REDIS_USERS)) problems.push(`${at(row)}: ${role} is no Redis user (${Object.keys(REDIS_USERS).join(', ')})`);
        else if (item && !allows(role as RedisRoleName, item, access)) {
          problems.push(`${at(row)}: ${role} ${access} it, but REDIS_GRANTS gives it no right to`);
        }
      }
    }
    for (const role of row.writes.filter((role) => row.reads.includes(role))) {
      problems.push(`${at(row)}: ${role} is under both writes and reads (reads is for those that only read)`);
    }
  }
  for (const key of items.keys()) if (!seen.has(key)) problems.push(`docs/architecture.md: no row for ${key}`);

  // Each right of a user granted key by key is used in some row: queues and keys it may write, under writes.
  const rowOf = new Map(rows.map((row) => [row.key, row]));
  for (const [key, item] of items) {
    const row = rowOf.get(key);
    if (!row) continue;
    for (const role of Object.keys(REDIS_GRANTS) as RedisRoleName[]) {
      const grant = REDIS_GRANTS[role];
      if (grant.scope !== 'listed') continue;
      const named = row.writes.includes(role) || row.reads.includes(role);
      if (item.kind === 'channel') {
        if (grant.channels.includes(item.name) && !named) problems.push(`${at(row)}: ${role} may use it but is named in neither column`);
      } else if (allows(role, item, 'writes') && !row.writes.includes(role)) {
        problems.push(`${at(row)}: ${role} may write it but is not under writes`);
      } else if (allows(role, item, 'reads') && !named) {
        problems.push(`${at(row)}: ${role} may read it but is named in neither column`);
      }
    }
  }
  return problems;
}

describe("docs/architecture.md's table of Redis keys", () => {
  it('names each key, pattern and channel of redis-keys.ts once, and who uses it as REDIS_GRANTS allows', async () => {
    assert.deepEqual(tableProblems(await readFile(DOC, 'utf8')), []);
  });

  it('finds a row missing or added, a role without the right, and a right no row uses (the check can fail)', async () => {
    const text = await readFile(DOC, 'utf8');
    const row = (key: string) => {
      const found = text.split('\n').find((line) => line.startsWith(`| \`${key}\``));
      assert.ok(found, key);
      return found;
    };
    const lineOf = (line: string) => text.split('\n').indexOf(line) + 1;

    const jobs = row(REDIS_KEY_FAMILIES.jobRecords.pattern(P));
    assert.deepEqual(tableProblems(text.replace(jobs, jobs.replace('| connector |', '| connector, builder |'))), [
      `docs/architecture.md:${lineOf(jobs)}: <p>:jobs:*: builder writes it, but REDIS_GRANTS gives it no right to`,
    ]);

    const rounds = row(REDIS_KEY_FAMILIES.signerRounds.pattern(P));
    assert.deepEqual(tableProblems(text.replace(rounds, rounds.replace('| signer |', '| — |'))), [
      `docs/architecture.md:${lineOf(rounds)}: <p>:signer-rounds:*: signer may write it but is not under writes`,
    ]);

    const capacity = row(REDIS_CHANNELS.builderCapacity(P));
    assert.deepEqual(tableProblems(text.replace(`${capacity}\n`, '')), ['docs/architecture.md: no row for <p>:capacity']);
    assert.deepEqual(tableProblems(text.replace(capacity, capacity.replace('<p>:capacity', '<p>:wake'))), [
      `docs/architecture.md:${lineOf(capacity)}: <p>:wake is no key, pattern or channel of libs/protocol/src/redis-keys.ts`,
      'docs/architecture.md: no row for <p>:capacity',
    ]);

    const targets = row(REDIS_KEY_FAMILIES.archiveTargets.pattern(P));
    assert.deepEqual(
      tableProblems(text.replace(targets, targets.replace('signer, uploader, operator', 'signer, uploader, operator, auditor'))),
      [`docs/architecture.md:${lineOf(targets)}: <p>:archive-targets: auditor is no Redis user (${Object.keys(REDIS_USERS).join(', ')})`],
    );
  });
});
