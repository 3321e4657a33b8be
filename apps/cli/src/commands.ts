import { DEFAULT_CONFIG_FILE } from '@spark/config';

/*
 * Every `spark` command: its usage text and where its code lives. The code is
 * imported only when the command runs, so `spark run` (a long-lived
 * supervisor) never loads the queue library, and only `spark dashboard` loads
 * express and bull-board.
 */

/** Where a CLI command writes. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Exit code for a command line we cannot understand (sysexits' EX_USAGE). */
export const EXIT_USAGE = 64;

/** One `spark` command. */
export interface Command {
  /** Usage lines, indented two spaces, the first naming the command. */
  usage: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run: (argv: string[], io: CliIo) => Promise<number>;
}

/** The commands, in the order `spark --help` lists them. */
export const COMMANDS: Record<string, Command> = {
  config: {
    usage: `  config check [--config FILE]   check spark.toml and print the effective config as JSON
                                 (exit 0 when valid; 78 with one line per problem, 66 when missing)`,
    run: async (argv, io) => (await import('./config-check.js')).runConfig(argv, io),
  },
  verify: {
    usage: `  verify [--config FILE] [--json]
                                 pre-flight check (as root): files, owners and modes, keys, Redis users,
                                 Lighthouse, the archive, debspawn images, sudo; exit 0 when all hold,
                                 78 config, 66 missing file, 69 unavailable, 77 not root`,
    run: async (argv, io) => (await import('./verify/verify-command.js')).verifyCommand(argv, io),
  },
  run: {
    usage: `  run [--config FILE]            run the four services under one supervisor (restarts
                                 crashed ones with backoff; SIGTERM drains and stops all)`,
    run: async (argv, io) => (await import('./supervisor/run-command.js')).runCommand(argv, io),
  },
  status: {
    usage: `  status [--config FILE] [--redis [LABEL=]URL]... [--prefix P] [--stuck-after S] [--json]
                                 queues, live builders, Lighthouse link, jobs in flight; exit 0 healthy,
                                 69 Redis unreachable, 5 Lighthouse link down, 4 no live builder, 3 a stage stuck`,
    run: async (argv, io) => (await import('./status/status-command.js')).statusCommand(argv, io),
  },
  dashboard: {
    usage: `  dashboard [--config FILE] [--redis [LABEL=]URL]... [--prefix P] [--bind ADDR]
            [--port N] [--read-write] [--token-file FILE]
                                 queue dashboard (bull-board), 127.0.0.1:3000 by default`,
    run: async (argv, io) => (await import('./dashboard/dashboard-command.js')).dashboardCommand(argv, io.stderr),
  },
  keytool: {
    usage: `  keytool key-new --id=ID --name=NAME --email=EMAIL [--organization=ORG] DIR
                                 write DIR/ID.key and DIR/ID.key_secret (Laniakea keyfiles, as lk-keytool)
  keytool install-worker-key [--config FILE] [--force] KEYFILE
                                 install this worker's ID.key_secret as its Curve secret key
  keytool install-server-key [--config FILE] [--force] KEYFILE
                                 install Lighthouse's public key file for this worker
  keytool install-trusted-key [--force] --dir DIR NAME KEYFILE
                                 trust a worker's public key on a Lighthouse (or stand-in): DIR/NAME.pub.key
  keytool install-signer-key [--config FILE] [--with-key host|tpm2|host+tpm2] [--force] [SECRETKEY]
                                 (as root) encrypt the signer's OpenPGP key (default GpgSecretKeyFile) as a
                                 systemd credential: /etc/credstore.encrypted, the unit's drop-in, spark.toml`,
    run: async (argv, io) => (await import('./keytool/keytool-cli.js')).runKeytool(argv, io),
  },
  'retry-upload': {
    usage: `  retry-upload <uuid> [--config FILE]
                                 re-queue a job whose upload failed (its files are still
                                 in its workspace); files already uploaded are not sent again`,
    run: async (argv, io) => (await import('./retry-upload.js')).runRetryUpload(argv, io),
  },
  cancel: {
    usage: `  cancel <uuid> [--reason TEXT] [--config FILE]
                                 stop a running build (its whole process tree) and reject
                                 the job back to Lighthouse`,
    run: async (argv, io) => (await import('./cancel.js')).runCancel(argv, io),
  },
  'redis-acl': {
    usage: `  redis-acl [--config FILE] [--credentials-dir DIR] [--acl-file FILE] [--prefix P]
                                 one Redis ACL user per service (install step): password files
                                 in RedisCredentialsDir, the ACL file (default /etc/redis/spark-users.acl)`,
    run: async (argv, io) => (await import('./redis-acl.js')).runRedisAcl(argv, io),
  },
  logs: {
    usage: `  logs [-f] <uuid> [--config FILE]
                                 print a job's build log; -f follows it while the job runs`,
    run: async (argv, io) => (await import('./logs.js')).runLogs(argv, io),
  },
};

/** `spark --help`. */
export const USAGE = `usage: spark <command> [options]
       spark <command> [<subcommand>] --help
       spark --version

commands:
${Object.values(COMMANDS)
  .map((command) => command.usage)
  .join('\n')}

--config defaults to ${DEFAULT_CONFIG_FILE}.`;

/** The usage of one command, as its `--help` prints it. */
export function commandUsage(name: string): string {
  return `usage:\n${COMMANDS[name]?.usage ?? ''}`;
}

/** Writes a command-line problem and the command's usage to stderr; returns {@link EXIT_USAGE}. */
export function usageError(io: Pick<CliIo, 'stderr'>, command: string, message: string): number {
  io.stderr.write(`spark ${command}: ${message}\n${commandUsage(command.split(' ')[0] ?? command)}\n`);
  return EXIT_USAGE;
}
