// Finds a uWebSockets.js build that loads on this host, refusing pure-JS fallbacks.

import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

export type UwsModule = typeof UWS;

/**
 * Tried in order: the official package, then registry builds that ship binaries.
 * FAIRWAY_UWS_PACKAGES=a,b replaces the list (a build installed under another name, or none).
 */
const CANDIDATES = process.env.FAIRWAY_UWS_PACKAGES?.split(',').map((name) => name.trim()).filter(Boolean) ?? [
  'uWebSockets.js',
  '@trufflesuite/uws-js-unofficial',
  '@btc-vision/uwebsockets.js',
];

export interface BindingResult {
  uws?: UwsModule;
  /** Which package and version loaded, e.g. "uWebSockets.js (@trufflesuite/uws-js-unofficial 20.30.0)". */
  name?: string;
  /** Why each candidate did not load, when none did. */
  reasons: string[];
}

let cached: BindingResult | undefined;

export function loadUws(): BindingResult {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const reasons: string[] = [];
  for (const candidate of CANDIDATES) {
    try {
      const uws = require(candidate) as UwsModule;
      // A package's fallback without a native binary has a JS App and no SSLApp.
      if (typeof uws.SSLApp !== 'function' || !String(uws.App).includes('[native code]')) {
        reasons.push(`${candidate}: no native binary for this platform (pure-JS fallback refused)`);
        continue;
      }
      let version = '';
      try {
        const pkg = require(`${candidate}/package.json`) as { name: string; version: string };
        version = pkg.name === candidate ? ` ${pkg.version}` : ` (${pkg.name} ${pkg.version})`;
      } catch {
        // Some packages do not export package.json; the name alone will do.
      }
      cached = { uws, name: `${candidate}${version}`, reasons };
      return cached;
    } catch (err) {
      const message = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'not installed' : (err as Error).message.split('\n')[0];
      reasons.push(`${candidate}: ${message}`);
    }
  }
  cached = { reasons };
  return cached;
}
