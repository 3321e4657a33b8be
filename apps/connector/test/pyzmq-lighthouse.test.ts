import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { archiveTargetsKey, storedArchiveTargetsSchema } from '@spark/protocol';
import { startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { createKeyFiles, installServerKey, installWorkerKey } from '@spark/keys';
import { MACHINE, startWorldOnRedis } from './harness.js';

// Debian's python3 with python3-zmq; the server is set up as Laniakea's
// jobs_server.py does it: ROUTER, curve_server, an authenticator trusting the
// *.key files of a directory, and only [identity, empty, data] requests.
const PYTHON = '/usr/bin/python3';
const SERVER = `
import sys, json, zmq, zmq.auth
from zmq.auth.thread import ThreadAuthenticator
ctx = zmq.Context.instance()
auth = ThreadAuthenticator(ctx)
auth.start()
auth.configure_curve(domain='*', location=sys.argv[2])
sock = ctx.socket(zmq.ROUTER)
pub, sec = zmq.auth.load_certificate(sys.argv[1])
sock.curve_secretkey = sec
sock.curve_publickey = pub
sock.curve_server = True
print(sock.bind_to_random_port('tcp://127.0.0.1'), flush=True)
while True:
    msg = sock.recv_multipart()
    if len(msg) != 3:
        continue
    address, _, data = msg
    request = json.loads(data)
    print(json.dumps(request), flush=True)
    if request.get('request') == 'archive-info':
        reply = {'archive_repos': {'master': {'upload_fqdn': 'py.example.org/_upload', 'upload_method': 'https'}}}
    elif request.get('request') == 'job':
        reply = None
    else:
        reply = True
    sock.send_multipart([address, b'', json.dumps(reply).encode()])
`;

describe('spark-connector against a pyzmq Lighthouse, with keys from spark keytool', () => {
  let redis: RedisServer;
  let dir: string;
  let server: ChildProcessWithoutNullStreams;
  const received: Array<Record<string, unknown>> = [];
  let port = '';

  before(async () => {
    redis = await startRedisServer();
    dir = await mkdtemp(join(tmpdir(), 'spark-pyzmq-'));
    await createKeyFiles({ id: MACHINE, name: 'Hydrogen Worker', email: 'h@example.org' }, join(dir, 'worker'));
    await createKeyFiles({ id: 'lighthouse', name: 'Lighthouse', email: 'l@example.org' }, join(dir, 'server'));
    server = spawn(PYTHON, ['-c', SERVER, join(dir, 'server', 'lighthouse.key_secret'), join(dir, 'worker')]);
    const lines = createInterface({ input: server.stdout });
    port = await new Promise<string>((resolve, reject) => {
      server.once('error', reject);
      server.once('exit', (code) => reject(new Error(`pyzmq server exited ${code}`)));
      lines.once('line', resolve);
    });
    lines.on('line', (line) => received.push(JSON.parse(line) as Record<string, unknown>));
  });
  after(async () => {
    if (server.exitCode === null) {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGKILL');
      await exited;
    }
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('talks CURVE to it with the installed key-new files and stores its upload targets', async () => {
    const world = await startWorldOnRedis({
      redisUrl: redis.url,
      endpoint: `tcp://127.0.0.1:${port}`,
      installKeys: async (config) => {
        await installWorkerKey(join(dir, 'worker', `${MACHINE}.key_secret`), config.curveSecretKeyFile, false);
        await installServerKey(join(dir, 'server', 'lighthouse.key'), config.lighthouseServerKeyFile, false);
      },
    });
    try {
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await waitFor('pyzmq to get a job request', () => received.some((r) => r['request'] === 'job'), { timeoutMs: 8_000 });
      assert.deepEqual(received[0], { request: 'archive-info', machine_name: MACHINE, machine_id: world.config.machineId });
      const stored = storedArchiveTargetsSchema.parse(JSON.parse((await world.redis.get(archiveTargetsKey(world.prefix))) ?? 'null'));
      assert.deepEqual(stored.archive_repos, { master: { upload_fqdn: 'py.example.org/_upload', upload_method: 'https' } });
    } finally {
      await world.close();
    }
  });
});
