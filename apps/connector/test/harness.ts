import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Queue } from 'bullmq';
import { curveKeyPair } from 'zeromq';
import { parseConfig, type SparkConfig } from '@spark/config';
import type { BuilderHeartbeat } from '@spark/protocol';
import { formatCurveKeyFile } from '@spark/keys';
import { connectRedis, createLogger, writeBuilderHeartbeat, type Redis } from '@spark/service';
import { builderHeartbeat, randomQueuePrefix, startLighthouseStandIn, type LighthouseStandIn, type StandInOptions } from '@spark/testing';
import { createConnector, type Connector } from '../src/connector.js';
import { loadConnectorKeys } from '@spark/lighthouse';

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
  redisUrl: string;
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
  /** Queue prefix (default a random one): another world's, to share its Redis keys. */
  prefix?: string;
  /** `[connector] PollInterval` in s (default 0.05). */
  pollInterval?: number;
}

/** A stand-in Lighthouse, a connector configured for it, and helpers, all closed by `close()`. */
export interface World {
  dir: string;
  config: SparkConfig;
  prefix: string;
  serverKeys: KeyPair;
  workerKeys: KeyPair;
  trustedDir: string;
  standIn: LighthouseStandIn | null;
  connector: Connector;
  redis: Redis;
  buildQueue: Queue;
  reportQueue: Queue;
  /** Every log line the connector wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  fatal: unknown[];
  /** Publishes a builder heartbeat as the builder does. */
  heartbeat(beat: Partial<BuilderHeartbeat>): Promise<void>;
  close(): Promise<void>;
}

export const MACHINE = 'hydrogen';

/** Sets up keys, config, a stand-in (unless `endpoint`) and a connector (not started). */
export async function startWorld(options: WorldOptions): Promise<World> {
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
  const prefix = options.prefix ?? randomQueuePrefix();
  const toml = `LighthouseServer = '${options.endpoint ?? standIn?.endpoint ?? ''}'
AcceptedJobs = ['package-build', 'os-image-build']
GpgKeyID = 'DEADBEEF'
MachineName = '${MACHINE}'
MachineOwner = 'tests'
Architectures = ['amd64', 'arm64']
CurveKeysDir = '${curveDir}'
RedisUrl = '${options.redisUrl}'
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
  const fatal: unknown[] = [];
  const connector = createConnector({
    config,
    keys: loadConnectorKeys(config),
    logger: createLogger('connector', stream),
    backoff: { initialMs: 50, maxMs: 300 },
    rejectionCooldown: { initialMs: 300, maxMs: 2_000 },
    onFatal: (error) => fatal.push(error),
  });
  const redis = connectRedis(options.redisUrl, 'worker');
  const buildQueue = new Queue('build', { connection: redis, prefix });
  const reportQueue = new Queue('report', { connection: redis, prefix });
  return {
    dir,
    config,
    prefix,
    serverKeys,
    workerKeys,
    trustedDir,
    standIn,
    connector,
    redis,
    buildQueue,
    reportQueue,
    logs,
    fatal,
    async heartbeat(beat) {
      await writeBuilderHeartbeat(redis, prefix, builderHeartbeat(beat));
    },
    async close() {
      await connector.close();
      standIn?.close();
      await buildQueue.close();
      await reportQueue.close();
      await redis.quit();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
