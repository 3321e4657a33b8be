import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { processMetrics, serveMetrics, type MetricsServer } from '@spark/service';
import { freePort, startLighthouseStandIn, waitFor, type LighthouseStandIn, type StandInOptions } from '@spark/testing';
import { createLighthouseLink, LinkAborted, pause, type LighthouseLink } from '@spark/lighthouse';

const silent = pino({ level: 'silent' });
const WAIT = { timeoutMs: 15_000, intervalMs: 25 };

/** One sample of a Prometheus text scrape. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

describe('the Lighthouse link gauges', () => {
  let dir: string;
  let standIn: LighthouseStandIn | null = null;
  let endpoint: MetricsServer;
  const server = curveKeyPair();
  const worker = curveKeyPair();
  let standInOptions: StandInOptions;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-link-metrics-'));
    await mkdir(join(dir, 'trusted'));
    const trusted = join(dir, 'trusted', 'worker.pub.key');
    await writeFile(
      trusted,
      formatCurveKeyFile({
        metadata: { id: 'worker' },
        curvePublicKey: worker.publicKey,
        curveSecretKey: null,
        edVerifyKey: null,
        edSigningKey: null,
      }),
    );
    await chmod(trusted, 0o644);
    standInOptions = { serverKeys: server, trustedKeysDir: join(dir, 'trusted') };
    endpoint = await serveMetrics(processMetrics('connector', { version: 'test' }), await freePort(), silent);
  });
  after(async () => {
    standIn?.close();
    await endpoint.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The scraped value of `name` for `labels`, or null when the scrape has no such sample. */
  const scraped = async (name: string, labels: Record<string, string>): Promise<number | null> => {
    assert.ok(endpoint.url);
    const response = await fetch(endpoint.url);
    assert.equal(response.status, 200);
    const found = parseSamples(await response.text()).find(
      (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    );
    return found?.value ?? null;
  };

  it('flip to 0 when Lighthouse stops answering and back to 1 when it answers again, keeping the time of the last reply', async () => {
    standIn = await startLighthouseStandIn(standInOptions);
    const where = standIn.endpoint;
    const link: LighthouseLink = createLighthouseLink({
      endpoint: where,
      keys: { publicKey: worker.publicKey, secretKey: worker.secretKey, serverKey: server.publicKey },
      identity: { machine_name: 'hydrogen', machine_id: 'c05c855f-f940-5c59-abb6-b5c63d7d78e6' },
      replyTimeoutMs: 300,
      backoff: { initialMs: 20, maxMs: 100 },
      serverKeyFile: join(dir, 'hydrogen_lighthouse-server.pub'),
      logger: silent,
    });
    const labels = { server: where, service: 'connector' };
    const linkUp = () => scraped('spark_lighthouse_link_up', labels);
    const lastContact = () => scraped('spark_lighthouse_last_contact_seconds', labels);
    const noReplies = () =>
      scraped('spark_lighthouse_errors_total', { request: 'archive-info', reason: 'no-reply', service: 'connector' }).then((v) => v ?? 0);

    // Before the first reply the link is not up, and there is no contact to tell the time of.
    assert.equal(await linkUp(), 0);
    assert.equal(await lastContact(), null);

    // The connector's way of asking: one request after another, each until Lighthouse answers.
    const stop = new AbortController();
    const asking = (async () => {
      while (!stop.signal.aborted) {
        try {
          await link.requestUntilAnswered({ request: 'archive-info' }, stop.signal);
        } catch (error) {
          if (!(error instanceof LinkAborted)) throw error;
        }
        await pause(10, stop.signal);
      }
    })();
    try {
      const startedAt = Date.now() / 1000;
      await waitFor('link up', async () => (await linkUp()) === 1, WAIT);
      const firstContact = await lastContact();
      assert.ok(firstContact !== null && firstContact >= Math.floor(startedAt), `last contact ${firstContact} before the first request`);

      standIn.close();
      await waitFor('link down once Lighthouse is gone', async () => (await linkUp()) === 0, WAIT);
      const contactBeforeOutage = await lastContact();
      assert.ok(contactBeforeOutage !== null && contactBeforeOutage >= firstContact);
      // More requests go unanswered; the time of the last reply stays where it was.
      const failed = await noReplies();
      await waitFor('another unanswered request', async () => (await noReplies()) >= failed + 2, WAIT);
      assert.equal(await lastContact(), contactBeforeOutage);
      assert.equal(await linkUp(), 0);

      // Lighthouse comes back on the same endpoint (the port may take a moment to be free again).
      const back = await waitFor(
        'the stand-in bound again',
        () => startLighthouseStandIn({ ...standInOptions, endpoint: where }).catch(() => null),
        WAIT,
      );
      standIn = back;
      await waitFor('link up again', async () => (await linkUp()) === 1, WAIT);
      const contactAfter = await lastContact();
      assert.ok(
        contactAfter !== null && contactAfter > contactBeforeOutage,
        `last contact ${contactAfter} not after ${contactBeforeOutage}`,
      );
      assert.ok(back?.requests.some((request) => request.request === 'archive-info'));
    } finally {
      stop.abort();
      await asking;
      link.close();
    }
    assert.equal(await linkUp(), 0, 'a closed link is not up');
  });
});
