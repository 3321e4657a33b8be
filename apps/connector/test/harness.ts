import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { curveKeyPair } from 'zeromq';
import { parseConfig, type SparkConfig } from '@spark/config';
import type { BuilderHeartbeat, JobRecord, ReportSender } from '@spark/protocol';
import { formatCurveKeyFile } from '@spark/keys';
import { connectRedis, createLogger, writeBuilderHeartbeat, type JobOutbox, type Logger, type Redis } from '@spark/service';
import {
  builderHeartbeat,
  randomQueuePrefix,
  startLighthouseStandIn,
  waitFor,
  type LighthouseStandIn,
  type StandInOptions,
} from '@spark/testing';
import { createConnector, type Connector } from '../src/connector.js';
import { createConnectorOnRedis } from '../src/connector-redis.js';
import type { ReportInbox } from '../src/report-inbox.js';
import { loadConnectorKeys, type Backoff } from '@spark/lighthouse';
import { FakeConnectorStore } from './fake-connector-world.js';
import type { FakeClock, FakeReportQueue } from './fake-relay-world.js';

/** A Curve keypair in Z85. */
export type KeyPair = { publicKey: string; secretKey: string };

/** Writes a Laniakea keyfile holding `keys` (secret part only when `secret`). */
export async function writeKeyFile(file: string, keys: KeyPair, secret: boolean, mode = secret ? 0o600 : 0o644): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(
    file,
    formatCurveKeyFile({
      metadata: { id: 'test' },
      curvePublicKey: keys.publicKey,
      curveSecretKey: secret ? keys.secretKey : null,
      edVerifyKey: null,
      edSigningKey: null,
    }),
  );
  await chmod(file, mode);
}

/** Options of {@link startWorld}. */
export interface WorldOptions {
  /** Extra `[connector]` TOML lines (durations in s). */
  connectorToml?: string;
  /** Leave the worker's key out of the stand-in's trusted keys. */
  untrusted?: boolean;
  /** Give the connector a server key that is not the stand-in's. */
  wrongServerKey?: boolean;
  /** Start no stand-in; the config points at `endpoint`. */
  endpoint?: string;
  standIn?: Partial<StandInOptions>;
  /** Installs the worker's secret key and Lighthouse's public key into `curveDir` instead of generated ones. */
  installKeys?: (config: SparkConfig) => Promise<void>;
  /** `[connector] PollInterval` in s (default 0.05). */
  pollInterval?: number;
  /** Another world whose Redis (in memory) this one shares, as a second connector on the same host. */
  share?: World;
}

/** What every world has: a stand-in Lighthouse, a connector configured for it, and what it logged. */
interface WorldBase {
  dir: string;
  config: SparkConfig;
  serverKeys: KeyPair;
  workerKeys: KeyPair;
  trustedDir: string;
  standIn: LighthouseStandIn | null;
  connector: Connector;
  /** Every log line the connector wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  fatal: unknown[];
  /** Publishes a builder heartbeat as the builder does. */
  heartbeat(beat: Partial<BuilderHeartbeat>): Promise<void>;
  close(): Promise<void>;
}

/** A connector on in-memory queues and records ({@link FakeConnectorStore}), with the stand-in over real CURVE. */
export interface World extends WorldBase {
  store: FakeConnectorStore;
  /** The store's clock, the connector's: runs with the wall clock, moved ahead by the test. */
  clock: FakeClock;
  /** Where the tests add reports as the connector's own (its report queue). */
  reports: JobOutbox;
  /** Each sender's report queue. */
  reportQueues: Record<ReportSender, FakeReportQueue>;
  /** The job record of `uuid`, as the connector wrote it, or null. */
  record(uuid: string): JobRecord | null;
  /** Announces capacity as a builder does when a slot frees or it registers. */
  announce(): void;
  /**
   * Moves the clock one PollInterval ahead `times` times, each time until the
   * job fetcher looked at capacity again: what it would ask for in that
   * time, it has asked for.
   */
  pollsPass(times: number): Promise<void>;
  /** Resolves once the job fetcher waits out a PollInterval: it has asked for everything it would ask for now. */
  idle(): Promise<void>;
}

/** A connector on a real redis-server, as main.ts opens it. */
export interface RedisWorld extends WorldBase {
  prefix: string;
  redis: Redis;
}

export const MACHINE = 'hydrogen';

/** The connector's settings the tests shorten. */
const TEST_BACKOFF: Backoff = { initialMs: 50, maxMs: 300 };
const TEST_REJECTION_COOLDOWN: Backoff = { initialMs: 300, maxMs: 2_000 };

interface Prepared extends Omit<WorldBase, 'connector' | 'heartbeat' | 'close'> {
  keys: ReturnType<typeof loadConnectorKeys>;
  logger: Logger;
}

/** Sets up keys, config and a stand-in (unless `endpoint`). */
async function prepare(options: WorldOptions, redisUrl: string, prefix: string): Promise<Prepared> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-connector-'));
  const serverKeys = curveKeyPair();
  const workerKeys = curveKeyPair();
  const curveDir = join(dir, 'curve');
  const trustedDir = join(dir, 'trusted');
  await mkdir(trustedDir);
  if (!options.installKeys) {
    await writeKeyFile(join(curveDir, 'secret', `${MACHINE}-spark_private.sec`), workerKeys, true);
    await writeKeyFile(join(curveDir, `${MACHINE}_lighthouse-server.pub`), options.wrongServerKey ? curveKeyPair() : serverKeys, false);
  }
  if (!options.untrusted) await writeKeyFile(join(trustedDir, `${MACHINE}.pub.key`), workerKeys, false);
  const standIn = options.endpoint ? null : await startLighthouseStandIn({ serverKeys, trustedKeysDir: trustedDir, ...options.standIn });
  const toml = `LighthouseServer = '${options.endpoint ?? standIn?.endpoint ?? ''}'
AcceptedJobs = ['package-build', 'os-image-build']
GpgKeyID = 'DEADBEEF'
MachineName = '${MACHINE}'
MachineOwner = 'tests'
Architectures = ['amd64', 'arm64']
CurveKeysDir = '${curveDir}'
RedisUrl = '${redisUrl}'
QueuePrefix = '${prefix}'
WorkspaceRoot = '${dir}/ws'
[connector]
ReplyTimeout = 0.3
PollInterval = ${options.pollInterval ?? 0.05}
${options.connectorToml ?? ''}
`;
  const configFile = join(dir, 'spark.toml');
  await writeFile(configFile, toml);
  const { config } = parseConfig(toml, configFile);
  await options.installKeys?.(config);
  const logs: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  let pending = '';
  stream.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  return {
    dir,
    config,
    serverKeys,
    workerKeys,
    trustedDir,
    standIn,
    logs,
    fatal: [],
    keys: loadConnectorKeys(config),
    logger: createLogger('connector', stream),
  };
}

/** Sets up keys, config, a stand-in (unless `endpoint`) and a connector (not started) on in-memory queues and records. */
export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const store = options.share?.store ?? new FakeConnectorStore();
  const { keys, logger, ...world } = await prepare(options, 'redis://127.0.0.1:1', 'spark-test');
  const life = store.relay.life();
  const inboxes: Record<ReportSender, ReportInbox> = {
    connector: life.inbox('connector'),
    builder: life.inbox('builder'),
    signer: life.inbox('signer'),
    uploader: life.inbox('uploader'),
  };
  const connector = createConnector({
    config: world.config,
    keys,
    logger,
    clock: store.clock,
    buildQueue: store.build,
    signQueue: store.sign,
    uploadQueue: store.upload,
    uploadsSettled: store.upload,
    reports: store.relay.queues.connector.outbox(),
    inboxes,
    records: life.records,
    builders: store.builders,
    kindBlocks: store.kindBlocks,
    notes: store.notes,
    lock: store.lock,
    ready: () => Promise.resolve(),
    backoff: TEST_BACKOFF,
    rejectionCooldown: TEST_REJECTION_COOLDOWN,
    onFatal: (error) => world.fatal.push(error),
  });
  return {
    ...world,
    connector,
    store,
    clock: store.clock,
    reports: store.relay.queues.connector.outbox(),
    reportQueues: store.relay.queues,
    record: (uuid) => store.relay.records.records.get(uuid.toLowerCase()) ?? null,
    announce: () => store.builders.announce(),
    async idle() {
      const pollMs = world.config.connector.pollIntervalMs;
      await waitFor('the job fetcher to wait a PollInterval', () => store.clock.pausing(pollMs), { timeoutMs: 8_000, intervalMs: 5 });
    },
    async pollsPass(times) {
      for (let poll = 0; poll < times; poll++) {
        const looked = store.builders.nextRead();
        await store.clock.advance(world.config.connector.pollIntervalMs);
        await looked;
      }
    },
    heartbeat(beat) {
      store.builders.beat({ ...builderHeartbeat(beat), at: store.clock.now(), ...beat });
      return Promise.resolve();
    },
    async close() {
      await connector.close();
      world.standIn?.close();
      await rm(world.dir, { recursive: true, force: true });
    },
  };
}

/** As {@link startWorld}, but the connector runs on the redis-server at `redisUrl`, as main.ts opens it. */
export async function startWorldOnRedis(options: WorldOptions & { redisUrl: string }): Promise<RedisWorld> {
  const prefix = randomQueuePrefix();
  const { keys, logger, ...world } = await prepare(options, options.redisUrl, prefix);
  const connector = createConnectorOnRedis(world.config, {
    keys,
    logger,
    backoff: TEST_BACKOFF,
    rejectionCooldown: TEST_REJECTION_COOLDOWN,
    onFatal: (error) => world.fatal.push(error),
  });
  const redis = connectRedis(options.redisUrl, 'worker');
  return {
    ...world,
    prefix,
    connector,
    redis,
    async heartbeat(beat) {
      await writeBuilderHeartbeat(redis, prefix, builderHeartbeat(beat));
    },
    async close() {
      await connector.close();
      world.standIn?.close();
      await redis.quit();
      await rm(world.dir, { recursive: true, force: true });
    },
  };
}
