import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { parseConfig, type SparkConfig } from '@spark/config';
import type { WaitOptions } from '@spark/testing';

/** A static file server over a directory, on a free loopback port: the archive the `.dsc` comes from. */
export async function serveDirectory(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const name = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname);
    const path = join(dir, name);
    stat(path).then(
      (info) => {
        response.writeHead(200, { 'content-length': info.size });
        createReadStream(path).pipe(response);
      },
      () => {
        response.writeHead(404);
        response.end('not found');
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Options of a test config. */
export interface TestConfigOptions {
  workspaceRoot: string;
  redisUrl: string;
  prefix: string;
  /** Extra lines of the `[builder]` table. */
  builder?: string;
}

/** spark.toml text for tests: their own workspace root, Redis and queue prefix. */
export function testConfigToml(options: TestConfigOptions): string {
  return `LighthouseServer = "tcp://127.0.0.1:5570"
AcceptedJobs = ["package-build", "os-image-build"]
GpgKeyID = "0123456789ABCDEF0123456789ABCDEF01234567"
MachineName = "builder-test"
MaxJobs = 2
Architectures = ["amd64"]
WorkspaceRoot = "${options.workspaceRoot}"
RedisUrl = "${options.redisUrl}"
QueuePrefix = "${options.prefix}"
[builder]
StatusInterval = 1
${options.builder ?? ''}
`;
}

/** The loaded config of {@link testConfigToml}. */
export function testConfig(options: TestConfigOptions): SparkConfig {
  return parseConfig(testConfigToml(options), 'test-spark.toml').config;
}

/** How these tests wait for what a build does (waitFor of @spark/testing): up to 3 minutes, a debspawn build's time, looking every 200 ms. */
export const BUILD_WAIT: WaitOptions = { timeoutMs: 180_000, intervalMs: 200 };
