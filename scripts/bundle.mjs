// Bundles the command line and each engine's serve task into dist/bundle/ (after tsc has built
// dist/). A process or worker thread that loads one file instead of a tree of ES modules and
// packages starts in a third of the time, and a CommonJS file loads faster still than the same
// code as an ES module on Node 20: no ES module loader is set up in the process or in any worker
// thread (docs/BENCHMARKS.md, start-up). So the bundles are CommonJS, one file per entry; the
// primary's imports on demand (fleet, admin) are in cli.js but run only when configured.
//
// Left as requires of their own: native addons, packages that find files beside themselves at
// run time (piscina's worker), and those loaded only when the config asks for them.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const outdir = `${root}dist/bundle`;
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
// The package is "type": "module"; the .js files of this one directory are CommonJS.
writeFileSync(`${outdir}/package.json`, '{ "type": "commonjs" }\n');
await build({
  absWorkingDir: root,
  entryPoints: {
    cli: 'dist/src/cli.js',
    'serve-uws': 'dist/src/engine/uws/serveTask.js',
    'serve-native-free': 'dist/native-free/serveTask.js',
  },
  outdir,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  external: ['uWebSockets.js', 'bufferutil', 'utf-8-validate', 'piscina', 'ioredis', 'prom-client', 'undici', 'yaml', 'pino-pretty'],
  // The sources are ES modules and find their files from import.meta.url.
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: "'use strict';\nconst importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
