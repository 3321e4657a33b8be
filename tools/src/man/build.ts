/**
 * `npm run man [-- DIR]`: writes the manual pages of `spark` and the four
 * services, and `spark`'s bash completion, made from their `--help` output,
 * into DIR (default dist/man).
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bashCompletion } from './completion.js';
import { manPage, type PageSource } from './man-page.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The services and what each does, for their pages' NAME lines. */
const SERVICES = {
  connector: "fetch jobs from Laniakea's Lighthouse into the local queue and relay their reports",
  builder: 'build the packages and OS images of queued jobs in debspawn containers',
  signer: 'check build results and sign them with the archive key',
  uploader: 'upload signed build results to the archive',
} as const;

const helpTexts = new Map<string, Promise<string>>();

/** The `--help` output of the command whose entry is `entry` (relative to the repository), run from its sources. */
export function helpOf(entry: string): Promise<string> {
  let help = helpTexts.get(entry);
  if (!help) {
    help = run(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', join(ROOT, entry), '--help'], {
      cwd: ROOT,
      env: { ...process.env, SPARK_LOG_LEVEL: '' },
    }).then(({ stdout }) => stdout);
    helpTexts.set(entry, help);
  }
  return help;
}

/** Every page and the completion script, by file name. */
export async function manFiles(): Promise<Map<string, string>> {
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const pages = ['spark(1)', ...Object.keys(SERVICES).map((service) => `spark-${service}(8)`)];
  const files: [string, string][] = [['/etc/laniakea/spark.toml', 'the worker configuration (spark.toml, as laniakea-spark reads it)']];
  const sparkHelp = await helpOf('apps/cli/src/main.ts');
  const sources: PageSource[] = [
    {
      name: 'spark',
      section: 1,
      title: 'set up, check and operate a spark-ts build worker for Laniakea',
      help: sparkHelp,
      version,
      seeAlso: [...pages.slice(1), 'debspawn(1)', 'systemctl(1)'],
      files,
    },
  ];
  for (const [service, title] of Object.entries(SERVICES)) {
    sources.push({
      name: `spark-${service}`,
      section: 8,
      title,
      help: await helpOf(`apps/${service}/src/main.ts`),
      version,
      seeAlso: [...pages.filter((page) => page !== `spark-${service}(8)`), 'systemd.service(5)'],
      files,
    });
  }
  const out = new Map<string, string>();
  for (const source of sources) out.set(`${source.name}.${source.section}`, manPage(source));
  out.set('spark.bash-completion', bashCompletion([sparkHelp]));
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? join(ROOT, 'dist/man'));
  await mkdir(dir, { recursive: true });
  const written = await manFiles();
  for (const [name, text] of written) await writeFile(join(dir, name), text);
  console.log(`wrote ${[...written.keys()].join(', ')} to ${dir}`);
}
