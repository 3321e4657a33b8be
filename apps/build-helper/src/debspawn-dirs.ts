import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { tomlString } from './helper-config.js';

/** debspawn's host-wide settings (debspawn/config.py reads the same file). */
export const DEBSPAWN_GLOBAL_CONFIG = '/etc/debspawn/global.toml';

/** The host directories debspawn uses, as its global.toml sets them (defaults from debspawn/config.py). */
export interface DebspawnDirs {
  /** `OSImagesDir`: the base images; their prepared-image cache is `<imagesDir>/dcache`. */
  imagesDir: string;
  /** `APTCacheDir`: packages kept between builds. */
  aptCacheDir: string;
  /** `InjectedPkgsDir`: packages an operator injects into every build. */
  injectedPkgsDir: string;
  /** `TempDir`: where debspawn unpacks sources and containers. The sandbox puts the run's own directory here. */
  tempDir: string;
}

const DEFAULTS: DebspawnDirs = {
  imagesDir: '/var/lib/debspawn/images',
  aptCacheDir: '/var/lib/debspawn/aptcache',
  injectedPkgsDir: '/var/lib/debspawn/injected-pkgs',
  tempDir: '/var/tmp/debspawn',
};

const KEYS: Record<string, keyof DebspawnDirs> = {
  OSImagesDir: 'imagesDir',
  APTCacheDir: 'aptCacheDir',
  InjectedPkgsDir: 'injectedPkgsDir',
  TempDir: 'tempDir',
};

/** Reads the directory settings of debspawn's global.toml text (top-level one-line strings, as debspawn documents them). */
export function parseDebspawnDirs(text: string, file: string): DebspawnDirs {
  const dirs = { ...DEFAULTS };
  let table = '';
  text.split('\n').forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed.startsWith('[')) table = trimmed;
    const pair = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(trimmed);
    const field = pair && table === '' ? KEYS[pair[1] as string] : undefined;
    if (!pair || !field) return;
    const value = tomlString(pair[2] as string, `${file}:${index + 1}: ${pair[1] as string}`).replace(/\/+$/, '');
    if (!isAbsolute(value) || value.split('/').includes('..'))
      throw new Error(`${file}:${index + 1}: ${pair[1] as string} must be an absolute path`);
    dirs[field] = value;
  });
  return dirs;
}

/** debspawn's directories on this host: its global.toml where there is one, else debspawn's defaults. */
export async function loadDebspawnDirs(file: string = DEBSPAWN_GLOBAL_CONFIG): Promise<DebspawnDirs> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { ...DEFAULTS };
    throw error;
  }
  return parseDebspawnDirs(text, file);
}
