import { isIP } from 'node:net';
import type { ConfigProblem } from './config-error.js';
import { nearestName } from './nearest-name.js';

/** A value of a parsed TOML document. */
export type Value = unknown;
/** A parsed TOML table: key to value. */
export type Table = Record<string, Value>;

/** How a message names a TOML value it did not expect: `a table`, `the integer 3`, `the string "x"`. */
export function describeType(value: Value): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (value instanceof Date) return 'a date';
  if (typeof value === 'object') return 'a table';
  if (typeof value === 'number' && Number.isInteger(value)) return `the integer ${value}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number') return `the float ${value}`;
  return `the ${typeof value} ${JSON.stringify(value)}`;
}

/** Typed reads of a parsed TOML table that record a problem (with its line) instead of throwing. */
export class TableReader {
  private readonly lines: string[];

  constructor(
    source: string,
    private readonly file: string,
    private readonly problems: ConfigProblem[],
  ) {
    this.lines = source.split('\n');
  }

  error(section: string | null, key: string, message: string): void {
    this.problems.push({ severity: 'error', file: this.file, key: qualified(section, key), line: this.lineOf(section, key), message });
  }

  warning(section: string | null, key: string, message: string): void {
    this.problems.push({ severity: 'warning', file: this.file, key: qualified(section, key), line: this.lineOf(section, key), message });
  }

  checkUnknown(table: Table, section: string | null, known: readonly string[]): void {
    for (const key of Object.keys(table)) {
      if (known.includes(key)) continue;
      const suggestion = nearestName(key, known);
      this.warning(section, key, `unknown key, ignored${suggestion ? ` (did you mean ${qualified(section, suggestion)}?)` : ''}`);
    }
  }

  string(table: Table, section: string | null, key: string, opts: { required?: boolean } = {}): string | undefined {
    const value = table[key];
    if (value === undefined) {
      if (opts.required) this.missing(section, key);
      return undefined;
    }
    if (typeof value !== 'string') {
      this.error(section, key, `expected a string, got ${describeType(value)}`);
      return undefined;
    }
    if (opts.required && value.trim() === '') {
      this.error(section, key, 'must not be empty');
      return undefined;
    }
    return value;
  }

  path(table: Table, section: string | null, key: string): string | undefined {
    const value = this.string(table, section, key);
    if (value !== undefined && !value.startsWith('/')) {
      this.error(section, key, `expected an absolute path, got ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  stringArray(
    table: Table,
    section: string | null,
    key: string,
    opts: { required?: boolean; nonEmpty?: boolean } = {},
  ): string[] | undefined {
    const value = table[key];
    if (value === undefined) {
      if (opts.required) this.missing(section, key);
      return undefined;
    }
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
      this.error(section, key, `expected an array of strings, got ${describeType(value)}`);
      return undefined;
    }
    if (opts.nonEmpty && value.length === 0) {
      this.error(section, key, 'must list at least one entry');
      return undefined;
    }
    return value as string[];
  }

  /** An IP address to listen on, as Node's `net.isIP` accepts it (IPv6 without brackets, an optional `%zone`). */
  address(table: Table, section: string | null, key: string): string | undefined {
    const value = this.string(table, section, key);
    if (value === undefined || isIP(value) !== 0) return value;
    const unbracketed = /^\[(.*)\]$/.exec(value)?.[1];
    let hint = '';
    if (unbracketed !== undefined && isIP(unbracketed) === 6)
      hint = `; write an IPv6 address without brackets: ${JSON.stringify(unbracketed)}`;
    // A name would be resolved at each start, to whichever address it then has: the address itself is what gets bound.
    else if (/^[A-Za-z0-9.-]*[A-Za-z][A-Za-z0-9.-]*$/.test(value)) hint = '; a host name is not accepted, write the address it stands for';
    this.error(
      section,
      key,
      `expected an IPv4 or IPv6 address to listen on, like "127.0.0.1" (this host only), "192.0.2.10" (one interface), "0.0.0.0" (every IPv4 address) or "::" (every address), got ${JSON.stringify(value)}${hint}`,
    );
    return undefined;
  }

  boolean(table: Table, section: string | null, key: string): boolean | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') {
      this.error(section, key, `expected true or false, got ${describeType(value)}`);
      return undefined;
    }
    return value;
  }

  integer(table: Table, section: string | null, key: string, range: { min: number; max: number }): number | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      this.error(section, key, `expected an integer, got ${describeType(value)}`);
      return undefined;
    }
    if (value < range.min || value > range.max) {
      this.error(section, key, `must be between ${range.min} and ${range.max}, got ${value}`);
      return undefined;
    }
    return value;
  }

  number(table: Table, section: string | null, key: string, range: { min: number }): number | undefined {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.error(section, key, `expected a number of seconds, got ${describeType(value)}`);
      return undefined;
    }
    if (value < range.min) {
      this.error(section, key, `must be at least ${range.min}, got ${value}`);
      return undefined;
    }
    return value;
  }

  private missing(section: string | null, key: string): void {
    this.problems.push({
      severity: 'error',
      file: this.file,
      key: qualified(section, key),
      line: null,
      message: 'required key is missing',
    });
  }

  /** Line of `key = …` in `[section]` (or before any table for top-level keys), when written plainly. */
  private lineOf(section: string | null, key: string): number | null {
    let current: string | null = null;
    const keyPattern = new RegExp(`^\\s*(?:${escapeRegExp(key)}|"${escapeRegExp(key)}"|'${escapeRegExp(key)}')\\s*=`);
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[i] as string;
      const header = /^\s*\[\s*([^\]]+?)\s*\]/.exec(line);
      if (header) {
        current = header[1] as string;
        continue;
      }
      if (current === section && keyPattern.test(line)) return i + 1;
    }
    if (section === null) {
      const tableLine = this.lines.findIndex((line) => new RegExp(`^\\s*\\[\\s*${escapeRegExp(key)}\\s*\\]`).test(line));
      if (tableLine !== -1) return tableLine + 1;
    }
    return null;
  }
}

function qualified(section: string | null, key: string): string {
  return section === null ? key : `${section}.${key}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
