// Bundles the command line and each engine's serve task into dist/bundle/ (after tsc has built
// dist/). A process or worker thread that loads one file (and a chunk the serve tasks share)
// instead of a tree of ES modules and packages starts in a third of the time (docs/BENCHMARKS.md,
// start-up).
//
// The command line is CommonJS: on Node 20 the primary then sets up no ES module loader, which
// starts it sooner; its imports on demand (fleet, admin) are in cli.js but run only when
// configured. The serve tasks stay ES modules (.mjs, sharing chunks): as CommonJS a worker
// started sooner still, but each idle WebSocket session cost about 0.45 KiB more RSS, which
// weighs more for servers that hold tens of thousands of them.
//
// Left as requires of their own: native addons, packages that find files beside themselves at
// run time (piscina's worker), and those loaded only when the config asks for them.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const outdir = `${root}dist/bundle`;
const external = ['uWebSockets.js', 'bufferutil', 'utf-8-validate', 'piscina', 'ioredis', 'prom-client', 'undici', 'yaml', 'pino-pretty'];
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
// The package is "type": "module"; the .js files of this one directory are CommonJS.
writeFileSync(`${outdir}/package.json`, '{ "type": "commonjs" }\n');
await build({
  absWorkingDir: root,
  entryPoints: { cli: 'dist/src/cli.js' },
  outdir,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  external,
  // The sources are ES modules and find their files from import.meta.url.
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: "'use strict';\nconst importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
await build({
  absWorkingDir: root,
  entryPoints: {
    'serve-uws': 'dist/src/engine/uws/serveTask.js',
    'serve-native-free': 'dist/native-free/serveTask.js',
  },
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  external,
  // Packages written as CommonJS call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  logLevel: 'warning',
});
