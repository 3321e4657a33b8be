import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { curveKeyPair } from 'zeromq';
import { loadConfig, type SparkConfig } from '@spark/config';
import { formatCurveKeyFile } from '@spark/keys';
import { connectRedis, redisReady } from '@spark/service';
import { nodeEntryArgs, startRedisServer, type RedisServer } from '@spark/testing';
import { installServerKey, installWorkerKey } from '@spark/keys';
import { createKeyFiles } from '@spark/keys';
import { startLighthouseStandIn, type LighthouseStandIn, type RecordedRequest } from '@spark/testing';
import { JobBoard } from '@spark/testing';
import { SERVICES, serviceCommands, writeRedisAcl } from '@spark/cli';
import { startUploadReceiver, type UploadReceiver, type UploadReceiverOptions } from '@spark/testing';
import { makeThrowawayKey, type ThrowawayKey } from './openpgp-key.js';
import { startPackageArchive, type PackageArchive } from './package-archive.js';

const run = promisify(execFile);

/** One of the four services. */
export type ServiceName = (typeof SERVICES)[number];

/** The debspawn stand-in that builds on the host (tools/host-runner). */
export const HOST_RUNNER = fileURLToPath(new URL('../../host-runner/debspawn', import.meta.url));

/** The debspawn stand-in that copies prebuilt results from `$SPARK_PREBUILT_DIR/<dsc name>/` (tools/host-runner). */
export const NOOP_RUNNER = fileURLToPath(new URL('../../host-runner/noop-debspawn', import.meta.url));

/** Options of {@link startChain}. */
export interface ChainOptions {
  /** `debspawn` for real container builds, `host` for the fast host runner, `noop` for {@link NOOP_RUNNER} (default `host`). */
  runner?: 'debspawn' | 'host' | 'noop';
  /** `[connector] PollInterval` in seconds (default 0.2). */
  pollInterval?: number;
  /** Redis with an append-only file, so it can be restarted without losing jobs (default false). */
  appendOnly?: boolean;
  /** `MaxJobs` (default 1). */
  maxJobs?: number;
  /** Extra receiver switches (failure fraction, delays, lkwebupload's write-in-place). */
  receiver?: Partial<Pick<UploadReceiverOptions, 'failFraction' | 'failFiles' | 'answerDelayMs' | 'writeInPlace'>>;
  /** Extra keys of the spark.toml's `[uploader]` table (TOML lines). */
  uploaderToml?: string;
  /** Extra TOML appended to the generated spark.toml (its tables). */
  extraToml?: string;
  /** Extra keys of the generated `[builder]` table (e.g. `MaxLogSize = 3000000`). */
  builderToml?: string;
  /** `MetricsPort` of each service (default 0: no metrics endpoints). */
  metricsPorts?: Partial<Record<ServiceName, number>>;
  /** Called with every log line of every service (JSON text). Default: dropped. */
  onLog?: (service: ServiceName, line: string) => void;
  /** Root directory (default: a new temp dir, removed by close()). */
  dir?: string;
  /** `dist`: run the services' built entries (`npm run build` first), as installed; default: as this process resolves them (source under tsx). */
  build?: 'installed' | 'dist';
  /** V8 flags for every service (default: production's, each its own: nodeFlags of @spark/config). */
  nodeFlags?: readonly string[];
  /**
   * A directory made by bundlePrograms (tools/package/bundle.ts), as the package
   * installs it in /usr/lib/spark-ts: the services run from its esbuild bundles
   * (what operators run) instead of `build`'s entries.
   */
  bundles?: string;
  /** More node arguments for every service, before its entry (a benchmark's `--import` probe). */
  nodeArgs?: readonly string[];
  /** Mount a tmpfs of this many bytes on the workspaces dir, to fill the disk on purpose (needs root or password-less sudo; unmounted by close()). */
  workspaceSizeBytes?: number;
  /**
   * Redis as the install step sets it up (`spark redis-acl`): one ACL user per
   * service, the default user off, `RedisCredentialsDir` in spark.toml (default false).
   */
  redisAcl?: boolean;
  /**
   * Run these services as other (deployed) users instead of this process's:
   * each password file of `redisAcl` gets its deployed owner (the users must
   * exist), and the chain's directory opens for them to traverse. The caller
   * gives `dir` and makes `<dir>/lkspark` what those users may write.
   */
  users?: Partial<Record<ServiceName, { uid: number; gid: number }>>;
  /** `AcceptedJobs` (default `['package-build']`). */
  acceptedJobs?: readonly string[];
}

/** A whole worker on this machine against local stand-ins: Redis, Lighthouse, archive, upload receiver, keys, the four services. */
export interface Chain {
  dir: string;
  configFile: string;
  config: SparkConfig;
  redis: RedisServer;
  standIn: LighthouseStandIn;
  receiver: UploadReceiver;
  archive: PackageArchive;
  key: ThrowawayKey;
  /** Directory where the receiver stores uploads per repository (`<uploads>/master/<file>`). */
  uploadsDir: string;
  /** Starts a service (all four when none is named). */
  start(...names: ServiceName[]): void;
  /** Sends `signal` to a service and waits until it has exited. */
  stop(name: ServiceName, signal?: NodeJS.Signals): Promise<void>;
  /** True while the service's process runs. */
  running(name: ServiceName): boolean;
  /** The process id of a running service, or undefined. */
  pid(name: ServiceName): number | undefined;
  /** Every request any stand-in of this chain received, across Lighthouse restarts, in order. */
  lighthouseRequests(): RecordedRequest[];
  /** Stops the Lighthouse stand-in (the job board is kept). */
  stopLighthouse(): void;
  /** Starts the stand-in again on the same endpoint with the same jobs. */
  startLighthouse(): Promise<void>;
  /**
   * With `redisAcl`: what Redis refused since it started (ACL LOG), one line
   * per refusal naming the user, the reason and the command, key or channel.
   */
  refusedByRedis(): Promise<string[]>;
  /** Stops every service (SIGTERM), the stand-ins and Redis, and removes the directory it made. Safe to call twice. */
  close(): Promise<void>;
}

/** The test-only Redis user that may run ACL LOG, with `redisAcl`. */
const AUDIT_USER = 'spark-test-audit';

/**
 * Sets up and starts a complete worker on this machine, the way an operator
 * would with the keytool and spark.toml, but against local stand-ins. The
 * services run as separate processes, so they can be killed and restarted.
 */
export async function startChain(options: ChainOptions = {}): Promise<Chain> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'spark-chain-')));
  const steps: (() => Promise<void> | void)[] = [];
  const undo = async () => {
    for (const step of steps.reverse()) await Promise.resolve(step()).catch(() => {});
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    const credentialsDir = join(dir, 'redis-credentials');
    const aclFile = join(dir, 'redis-users.acl');
    // With the ACL users, a test-only user may read Redis's log of refused commands (ACL LOG) and INFO (the client's ready check), nothing else.
    const auditPassword = randomBytes(24).toString('hex');
    if (options.redisAcl) {
      await writeRedisAcl({ credentialsDir, aclFile, prefix: 'spark', chown: options.users !== undefined });
      await appendFile(aclFile, `user ${AUDIT_USER} on >${auditPassword} resetkeys resetchannels -@all +acl|log +info\n`);
    }
    if (options.users) await chmod(dir, 0o755);
    const redis = await startRedisServer({ appendOnly: options.appendOnly ?? false, args: options.redisAcl ? ['--aclfile', aclFile] : [] });
    steps.push(() => redis.stop());

    // Keys as an operator makes them: the worker's with key-new, installed where the connector looks.
    const machine = 'spark-demo';
    const keysDir = join(dir, 'keys');
    const curveKeysDir = join(keysDir, 'curve');
    const trustedDir = join(dir, 'lighthouse', 'trusted');
    await mkdir(trustedDir, { recursive: true });
    const worker = await createKeyFiles(
      { id: machine, name: 'Spark Demo Worker', email: 'spark-demo@example.invalid' },
      join(dir, 'keytool-out'),
    );
    await installWorkerKey(worker.secretFile, join(curveKeysDir, 'secret', `${machine}-spark_private.sec`), true);
    await writeFile(
      join(trustedDir, `${machine}.key`),
      formatCurveKeyFile({
        metadata: { id: machine },
        curvePublicKey: worker.curvePublicKey,
        curveSecretKey: null,
        edVerifyKey: null,
        edSigningKey: null,
      }),
    );
    const serverKeys = curveKeyPair();
    const serverPublicFile = join(dir, 'lighthouse', 'lighthouse-server.key');
    await writeFile(
      serverPublicFile,
      formatCurveKeyFile({
        metadata: { id: 'lighthouse' },
        curvePublicKey: serverKeys.publicKey,
        curveSecretKey: null,
        edVerifyKey: null,
        edSigningKey: null,
      }),
    );
    await installServerKey(serverPublicFile, join(curveKeysDir, `${machine}_lighthouse-server.pub`), true);

    const uploadsDir = join(dir, 'uploads');
    const receiver = await startUploadReceiver({ dir: uploadsDir, repos: ['master'], pathPrefix: '/_upload', ...options.receiver });
    steps.push(() => receiver.close());
    const board = new JobBoard();
    const archiveRepos = { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' as const } };
    let standIn = await startLighthouseStandIn({ serverKeys, trustedKeysDir: trustedDir, archiveRepos, board });
    const endpoint = standIn.endpoint;
    steps.push(() => standIn.close());
    const archive = await startPackageArchive(join(dir, 'archive'));
    steps.push(() => archive.close());
    const key = await makeThrowawayKey(join(dir, 'openpgp'));

    const configFile = join(dir, 'spark.toml');
    const debspawn = { host: HOST_RUNNER, noop: NOOP_RUNNER, debspawn: 'debspawn' }[options.runner ?? 'host'];
    await writeFile(
      configFile,
      `# Written by the spark chain harness (tools/src/chain).
LighthouseServer = '${endpoint}'
AcceptedJobs = ${JSON.stringify(options.acceptedJobs ?? ['package-build'])}
MachineOwner = 'Spark demo'
MachineName = '${machine}'
GpgKeyID = '${key.fingerprint}'
MaxJobs = ${options.maxJobs ?? 1}
WorkspaceRoot = '${join(dir, 'lkspark')}'
Architectures = ['amd64']
CurveKeysDir = '${curveKeysDir}'
RedisUrl = '${redis.url}'
${options.redisAcl ? `RedisCredentialsDir = '${credentialsDir}'\n` : ''}GpgSecretKeyFile = '${key.secretKeyFile}'

[connector]
ReplyTimeout = 2
PollInterval = ${options.pollInterval ?? 0.2}
RejectedCooldown = 1
MetricsPort = ${options.metricsPorts?.connector ?? 0}

[builder]
StatusInterval = 1
DrainTimeout = 5
Debspawn = '${debspawn}'
MetricsPort = ${options.metricsPorts?.builder ?? 0}
${options.builderToml ?? ''}

[signer]
MetricsPort = ${options.metricsPorts?.signer ?? 0}

[uploader]
IdleTimeout = 30
MetricsPort = ${options.metricsPorts?.uploader ?? 0}
${options.uploaderToml ?? ''}
${options.extraToml ?? ''}`,
    );
    const { config } = loadConfig(configFile);
    if (options.workspaceSizeBytes !== undefined) {
      await mkdir(config.workspacesDir, { recursive: true });
      // As root (CI, setup.sh) directly; otherwise through sudo, which must not ask for a password.
      const asRoot = (command: string, args: string[]) =>
        process.getuid?.() === 0 ? run(command, args) : run('sudo', ['-n', command, ...args]);
      await asRoot('mount', ['-t', 'tmpfs', '-o', `size=${options.workspaceSizeBytes}`, 'spark-chaos', config.workspacesDir]);
      steps.push(() => asRoot('umount', ['-l', config.workspacesDir]).then(() => undefined));
    }

    const commands = new Map(
      serviceCommands(configFile, SERVICES, {
        build: options.build ?? 'installed',
        ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}),
        sourceEntryArgs: nodeEntryArgs,
      })
        .map((spec) => {
          // The entry is the argument before `--config`; a bundle takes its place, the extra node arguments go before it.
          const at = spec.args.indexOf('--config') - 1;
          const entry = options.bundles ? join(options.bundles, 'node_modules/@spark', spec.name, 'dist/main.js') : spec.args[at]!;
          return { ...spec, args: [...spec.args.slice(0, at), ...(options.nodeArgs ?? []), entry, ...spec.args.slice(at + 1)] };
        })
        .map((spec) => [spec.name as ServiceName, spec]),
    );
    const children = new Map<ServiceName, ChildProcess>();
    const start = (...names: ServiceName[]) => {
      for (const name of names.length > 0 ? names : SERVICES) {
        if (children.has(name)) continue;
        const spec = commands.get(name);
        if (!spec) throw new Error(`unknown service ${name}`);
        const user = options.users?.[name];
        const child = spawn(spec.command, spec.args, {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            ...process.env,
            ...(user ? { HOME: '/nonexistent', USER: name } : {}),
            SPARK_BUILDER_ID: `${machine}@1`,
            SPARK_LOG_LEVEL: process.env['SPARK_LOG_LEVEL'] ?? 'info',
          },
          ...(user ? { uid: user.uid, gid: user.gid } : {}),
        });
        children.set(name, child);
        for (const stream of [child.stdout, child.stderr]) {
          createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => options.onLog?.(name, line));
        }
        child.once('exit', () => {
          if (children.get(name) === child) children.delete(name);
        });
      }
    };
    const stop = async (name: ServiceName, signal: NodeJS.Signals = 'SIGTERM') => {
      const child = children.get(name);
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        children.delete(name);
        return;
      }
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
      children.delete(name);
    };
    steps.push(async () => {
      await Promise.all(SERVICES.map((name) => stop(name)));
    });

    const earlierRequests: RecordedRequest[] = [];
    let closed: Promise<void> | null = null;
    return {
      dir,
      configFile,
      config,
      redis,
      get standIn() {
        return standIn;
      },
      receiver,
      archive,
      key,
      uploadsDir,
      start,
      stop,
      running: (name) => children.has(name),
      pid: (name) => children.get(name)?.pid,
      lighthouseRequests: () => [...earlierRequests, ...standIn.requests],
      async refusedByRedis() {
        const audit = connectRedis(redis.url, 'producer', { username: AUDIT_USER, password: auditPassword });
        try {
          await redisReady(audit);
          const entries = (await audit.call('ACL', 'LOG', '1000')) as unknown[][];
          return entries.map((entry) => {
            const fields = new Map<string, string>();
            for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), String(entry[i + 1]));
            return `${fields.get('username')}: ${fields.get('reason')} ${fields.get('object')} (${fields.get('context')}, ${fields.get('count')}×)`;
          });
        } finally {
          audit.disconnect();
        }
      },
      stopLighthouse: () => standIn.close(),
      async startLighthouse() {
        standIn.close();
        earlierRequests.push(...standIn.requests);
        standIn = await startLighthouseStandIn({ endpoint, serverKeys, trustedKeysDir: trustedDir, archiveRepos, board });
      },
      close: () => (closed ??= undo()),
    };
  } catch (error) {
    await undo();
    throw error;
  }
}
