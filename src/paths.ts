// Files of the package that fairway opens at run time. This module is built to dist/src/paths.js
// and bundled into dist/bundle/*.js: both one level below dist/, so one relative path to the
// package's root serves either way. Every such path lives here.

import { fileURLToPath } from 'node:url';

const file = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

export const PACKAGE_JSON = file('package.json');

/** The demo's chat backend, run as a child process. */
export const CHAT_BACKEND = file('scripts/chatBackend.mjs');

/**
 * The serve task of each engine, one long-lived task per worker thread: a bundle of its own
 * (scripts/bundle.mjs), so a worker starts with one file to read instead of a module tree.
 */
export const SERVE_TASKS = {
  uws: file('dist/bundle/serve-uws.js'),
  'native-free': file('dist/bundle/serve-native-free.js'),
} as const;
