import { isAbsolute, normalize } from 'node:path';
import { ARCHITECTURE, SUITE } from '@spark/protocol';

/** A request the helper refuses: the message says which argument and why. */
export class RefusedRequest extends Error {
  override readonly name = 'RefusedRequest';
}

/** `debspawn build` of a `.dsc` in a workspace, results into that workspace (apps/builder/src/package-build.ts). */
export interface PackageBuildRequest {
  kind: 'build';
  arch: string;
  only: 'arch' | 'indep' | 'binary';
  maintainer: string | null;
  suite: string;
  /** Absolute path of the `.dsc`, as given. */
  dsc: string;
  /** Absolute path of the results directory, as given. */
  resultsDir: string;
}

/** The OS-image `debspawn run` (apps/builder/src/image-build.ts). */
export interface ImageRunRequest {
  kind: 'image-run';
  arch: string;
  suite: string;
  artifactsOut: string;
  buildDir: string;
  /** The builder's `build-command.sh`. */
  script: string;
  /** The recipe's `prepare-command.sh` with its cache key, when the recipe has a `prepare.sh`. */
  init: { command: string; cacheKey: string } | null;
  /** `--allow=kvm,read-kmods`, asked for when debspawn's global config allows it. */
  allowKvm: boolean;
  header: string;
}

/** `debspawn --version`. */
export interface VersionRequest {
  kind: 'version';
}

/** Everything the helper runs. */
export type HelperRequest = PackageBuildRequest | ImageRunRequest | VersionRequest;

/** Cache keys the builder makes: `<suite>-mkimage-<format>-<environment>-<style>`. */
const CACHE_KEY = /^[A-Za-z0-9][A-Za-z0-9.+_-]{0,200}$/;

/** Free text (a maintainer, a header): one line of printable characters, not an option. */
function checkedText(option: string, value: string): string {
  // eslint-disable-next-line no-control-regex
  if (value.length > 512 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new RefusedRequest(`${option}: must be one line of at most 512 printable characters`);
  }
  return value;
}

function checkedName(what: string, pattern: RegExp, value: string | undefined): string {
  if (value === undefined || value.length > 128 || !pattern.test(value)) {
    throw new RefusedRequest(`${what} ${JSON.stringify(value ?? '')} is not a valid ${what} name`);
  }
  return value;
}

/** An absolute path written without `.`, `..`, `//` or a trailing slash: what the builder passes. */
function checkedPathText(what: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new RefusedRequest(`${what}: a path is required`);
  if (!isAbsolute(value) || normalize(value) !== value || value.endsWith('/') || value.split('/').includes('..')) {
    throw new RefusedRequest(`${what}: ${JSON.stringify(value)} must be an absolute path without '.', '..' or '//'`);
  }
  return value;
}

/** Splits `args` into `--name=value` / `--flag` options (or `--name value` for `separate`) and positionals. */
function splitOptions(args: readonly string[], separate: ReadonlySet<string>): { options: Map<string, string>; positionals: string[] } {
  const options = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (options.has(name)) throw new RefusedRequest(`${name} is given twice`);
    if (separate.has(name) && eq === -1) {
      const value = args[++i];
      if (value === undefined) throw new RefusedRequest(`${name} needs a value`);
      options.set(name, value);
    } else {
      options.set(name, eq === -1 ? '' : arg.slice(eq + 1));
    }
  }
  return { options, positionals };
}

function takeOnly(options: Map<string, string>, allowed: readonly string[], subcommand: string): void {
  for (const name of options.keys()) {
    if (!allowed.includes(name)) throw new RefusedRequest(`debspawn ${subcommand}: option ${name} is not allowed through the helper`);
  }
}

function required(options: Map<string, string>, name: string): string {
  const value = options.get(name);
  if (value === undefined) throw new RefusedRequest(`${name} is required`);
  return value;
}

function parseBuild(args: readonly string[]): PackageBuildRequest {
  const { options, positionals } = splitOptions(args, new Set());
  takeOnly(options, ['--no-buildlog', '--arch', '--results-dir', '--only', '--maintainer'], 'build');
  if (options.has('--no-buildlog') && options.get('--no-buildlog') !== '') throw new RefusedRequest('--no-buildlog takes no value');
  const only = required(options, '--only');
  if (only !== 'arch' && only !== 'indep' && only !== 'binary') throw new RefusedRequest(`--only=${only}: must be arch, indep or binary`);
  if (positionals.length !== 2) throw new RefusedRequest(`debspawn build takes a suite and a .dsc, got ${positionals.length} arguments`);
  const dsc = checkedPathText('the .dsc', positionals[1]);
  if (!dsc.endsWith('.dsc')) throw new RefusedRequest(`the .dsc: ${JSON.stringify(dsc)} is not a .dsc file`);
  const maintainer = options.get('--maintainer');
  return {
    kind: 'build',
    arch: checkedName('architecture', ARCHITECTURE, required(options, '--arch')),
    only,
    maintainer: maintainer === undefined ? null : checkedText('--maintainer', maintainer),
    suite: checkedName('suite', SUITE, positionals[0]),
    dsc,
    resultsDir: checkedPathText('--results-dir', required(options, '--results-dir')),
  };
}

function parseImageRun(args: readonly string[]): ImageRunRequest {
  const { options, positionals } = splitOptions(args, new Set(['--artifacts-out', '--build-dir', '--cachekey', '--init-command']));
  takeOnly(
    options,
    ['--external-command', '--arch', '--artifacts-out', '--build-dir', '--allow', '--cachekey', '--init-command', '--header'],
    'run',
  );
  if (options.get('--external-command') !== '') throw new RefusedRequest('debspawn run: only --external-command runs are allowed');
  const allow = options.get('--allow');
  if (allow !== undefined && allow !== 'kvm,read-kmods') throw new RefusedRequest(`--allow=${allow}: only kvm,read-kmods is allowed`);
  const cacheKey = options.get('--cachekey');
  const initCommand = options.get('--init-command');
  if ((cacheKey === undefined) !== (initCommand === undefined)) throw new RefusedRequest('--cachekey and --init-command go together');
  if (positionals.length !== 2) throw new RefusedRequest(`debspawn run takes a suite and a script, got ${positionals.length} arguments`);
  return {
    kind: 'image-run',
    arch: checkedName('architecture', ARCHITECTURE, required(options, '--arch')),
    suite: checkedName('suite', SUITE, positionals[0]),
    artifactsOut: checkedPathText('--artifacts-out', required(options, '--artifacts-out')),
    buildDir: checkedPathText('--build-dir', required(options, '--build-dir')),
    script: checkedPathText('the script', positionals[1]),
    init:
      cacheKey === undefined || initCommand === undefined
        ? null
        : { cacheKey: checkedName('cache key', CACHE_KEY, cacheKey), command: checkedPathText('--init-command', initCommand) },
    allowKvm: allow !== undefined,
    header: checkedText('--header', required(options, '--header')),
  };
}

/**
 * Reads the helper's arguments — exactly what the builder would pass to
 * debspawn — into a request, or throws {@link RefusedRequest}. Path arguments
 * are only checked for their form here; `checkWorkspacePath` checks them on
 * disk.
 */
export function parseRequest(args: readonly string[]): HelperRequest {
  const [subcommand, ...rest] = args;
  switch (subcommand) {
    case 'build':
      return parseBuild(rest);
    case 'run':
      return parseImageRun(rest);
    case '--version':
      if (rest.length > 0) throw new RefusedRequest('--version takes no arguments');
      return { kind: 'version' };
    case undefined:
    default:
      throw new RefusedRequest(
        `debspawn ${JSON.stringify(subcommand ?? '')} is not allowed: the helper runs only 'build', the image 'run' and '--version'`,
      );
  }
}
