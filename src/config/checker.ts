// What every section parser uses: the problem collector, paths, and value checks with units.

import { accessSync, constants } from 'node:fs';
import type { HostPort } from './types.js';
import { parseDuration, parseSize } from './units.js';

/** A config problem: where it is, what was expected, what was given. */
export class ConfigError extends Error {
  readonly code = 'FAIRWAY_CONFIG';
  constructor(readonly problems: string[]) {
    super(problems.map((p) => `config: ${p}`).join('\n'));
  }
}

export type Raw = Record<string, unknown>;

/** Collects every problem instead of stopping at the first, so one run shows them all. */
export class Checker {
  problems: string[] = [];

  fail(path: string, expected: string, got: unknown): undefined {
    this.problems.push(`${path}: expected ${expected}, got ${describe(got)}`);
    return undefined;
  }

  /** A mapping with free-form keys (pool names, header names). */
  mapping(path: string, value: unknown): Raw | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return this.fail(path, 'a mapping', value);
    }
    return value as Raw;
  }

  /** A mapping whose keys must be among `allowed`: a typo is an error, not silently ignored. */
  object(path: string, value: unknown, allowed: readonly string[]): Raw | undefined {
    if (!this.mapping(path, value)) return undefined;
    for (const key of Object.keys(value as Raw)) {
      if (!allowed.includes(key)) {
        this.problems.push(`${join(path, key)}: unknown key (allowed here: ${allowed.join(', ')})`);
      }
    }
    return value as Raw;
  }

  string(path: string, value: unknown): string | undefined {
    if (typeof value !== 'string' || value === '') return this.fail(path, 'a non-empty string', value);
    return value;
  }

  oneOf<T extends string>(path: string, value: unknown, choices: readonly T[]): T | undefined {
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      return this.fail(path, `one of ${choices.join(', ')}`, value);
    }
    return value as T;
  }

  boolean(path: string, value: unknown): boolean | undefined {
    if (typeof value !== 'boolean') return this.fail(path, 'true or false', value);
    return value;
  }

  integer(path: string, value: unknown, min: number, max: number): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return this.fail(path, `a whole number from ${min} to ${max}`, value);
    }
    return value;
  }

  duration(path: string, value: unknown): number | undefined {
    const ms = typeof value === 'string' ? parseDuration(value) : undefined;
    if (ms === undefined) return this.fail(path, 'a duration with a unit such as "500ms" or "5s"', value);
    return ms;
  }

  size(path: string, value: unknown): number | undefined {
    const bytes = typeof value === 'string' ? parseSize(value) : undefined;
    if (bytes === undefined) return this.fail(path, 'a size with a unit such as "64kb" or "16mb"', value);
    return bytes;
  }

  /** A list of DNS host names, lower-cased. */
  hostNames(path: string, value: unknown): string[] {
    if (!Array.isArray(value) || value.some((name) => typeof name !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(name))) {
      this.fail(path, 'a list of host names such as "lb1.internal"', value);
      return [];
    }
    return (value as string[]).map((name) => name.toLowerCase());
  }

  hostPort(path: string, value: unknown): HostPort | undefined {
    const parsed = typeof value === 'string' ? parseHostPort(value) : undefined;
    if (!parsed) return this.fail(path, 'host:port such as "127.0.0.1:8080"', value);
    return parsed;
  }
}

export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}

export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2], port };
}

export function parseRate(check: Checker, path: string, value: unknown): number | undefined {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)\/(s|m)$/.exec(value.trim()) : null;
  const rate = typeof value === 'number' ? value : match ? Number(match[1]) / (match[2] === 'm' ? 60 : 1) : NaN;
  if (!(rate > 0)) return check.fail(path, 'a rate such as "20/s" or "600/m"', value);
  return rate;
}

/** `{ rate, burst }`; burst defaults to one second's worth of rate (at least 1). */

export function readableFile(check: Checker, path: string, value: unknown): string | undefined {
  const file = check.string(path, value);
  if (file === undefined) return undefined;
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    check.problems.push(`${path}: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`);
    return undefined;
  }
  return file;
}
