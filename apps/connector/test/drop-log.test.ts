import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, it, mock } from 'node:test';
import { createLogger } from '@spark/service';
import { DROPS_LOGGED_PER_WINDOW, dropLog } from '../src/drop-log.js';

/** A logger whose lines are kept, parsed. */
function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) if (part) lines.push(JSON.parse(part) as Record<string, unknown>);
  });
  return { logger: createLogger('connector', stream), lines };
}

describe('the log of dropped reports', () => {
  it('logs the first drops of a window one by one per sender, then counts the rest in one line', async (t) => {
    mock.timers.enable({ apis: ['setTimeout'] });
    t.after(() => mock.timers.reset());
    const { logger, lines } = capture();
    const drops = dropLog(logger, 200);
    for (let i = 0; i < 500; i++) drops.drop('builder', i === 300 ? 'error' : 'warn', logger, `dropping report ${i}`);
    drops.drop('uploader', 'warn', logger, 'dropping the uploader’s report');
    mock.timers.tick(199);
    await turn();
    assert.ok(!lines.some((line) => String(line['msg']).startsWith('dropped ')), 'the window is still open');
    mock.timers.tick(1);
    await turn();
    const messages = lines.map((line) => String(line['msg']));
    assert.equal(messages.filter((message) => message.startsWith('dropping report ')).length, DROPS_LOGGED_PER_WINDOW);
    assert.ok(messages.includes('dropping the uploader’s report'), 'another sender has its own window');
    const summary = lines.find((line) => String(line['msg']).startsWith('dropped '));
    assert.equal(
      summary?.['msg'],
      `dropped ${500 - DROPS_LOGGED_PER_WINDOW} more reports from the builder's report queue in the last 0 s (not logged one by one)`,
    );
    assert.equal(summary?.['level'], 50, 'an error among the counted drops makes the count an error');
    drops.drop('builder', 'warn', logger, 'dropping report after the window');
    drops.close();
    assert.ok(
      lines.some((line) => line['msg'] === 'dropping report after the window'),
      'a new window logs again',
    );
  });
});
