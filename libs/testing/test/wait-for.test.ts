import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from '../src/wait-for.js';

describe('waitFor', () => {
  it('resolves with the first value the probe returns, probing again while it returns undefined, null or false', async () => {
    const answers = [undefined, null, false, 0, 1];
    let probes = 0;
    const value = await waitFor('a value', () => answers[probes++], { timeoutMs: 10_000, intervalMs: 1 });
    assert.equal(value, 0, 'zero is a value');
    assert.equal(probes, 4);
  });

  it('waits for an async probe', async () => {
    let probes = 0;
    const probe = () => Promise.resolve(++probes === 3);
    assert.equal(await waitFor('the third probe', probe, { timeoutMs: 10_000, intervalMs: 1 }), true);
  });

  it('gives up with what it waited for, for how long, and the detail read at that moment', async () => {
    let state = 'starting';
    await assert.rejects(
      waitFor(
        'the service to be up',
        () => {
          state = 'still starting';
          return false;
        },
        { timeoutMs: 20, intervalMs: 5, detail: () => `state: ${state}` },
      ),
      { message: 'timed out after 0.02 s waiting for the service to be up:\nstate: still starting' },
    );
  });

  it('ends the wait with the error of a probe that throws', async () => {
    await assert.rejects(
      waitFor(
        'anything',
        () => {
          throw new Error('the service exited');
        },
        { timeoutMs: 10_000 },
      ),
      { message: 'the service exited' },
    );
  });
});
