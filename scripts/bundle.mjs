// Bundles the command line and each engine's serve task into dist/bundle/ (after tsc has built
// dist/). A process or worker thread that loads one file and a few chunks instead of a tree of
// ES modules and packages starts in a third of the time (docs/BENCHMARKS.md, start-up).
//
// Left as imports of their own: native addons, packages that find files beside themselves at
// run time (piscina's worker), and those the primary loads only when the config asks for them.

import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const outdir = `${root}dist/bundle`;
rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: {
    cli: 'dist/src/cli.js',
    'serve-uws': 'dist/src/engine/uws/serveTask.js',
    'serve-native-free': 'dist/native-free/serveTask.js',
  },
  outdir,
  bundle: true,
  // The primary's imports on demand (fleet, admin) stay chunks of their own, loaded when used.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  external: ['uWebSockets.js', 'bufferutil', 'utf-8-validate', 'piscina', 'ioredis', 'prom-client', 'undici', 'yaml', 'pino-pretty'],
  // Packages written as CommonJS call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  logLevel: 'warning',
});
