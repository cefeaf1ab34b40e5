// Bundles the command line and each engine's serve task into dist/bundle/ (after tsc has built
// dist/). A process or worker thread that loads one file instead of a tree of ES modules and
// packages starts in a third of the time, and a CommonJS file sooner still than the same code as
// an ES module on Node 20: no ES module loader is set up in the process or in any worker thread
// (docs/BENCHMARKS.md, start-up).
//
// Each bundle is X.bundle.js, with V8's code cache for it in X.bundle.js.cache; X.js, what the
// command line and piscina start, runs it through load.js (scripts/loadBundle.cjs) with that
// cache. The primary's imports on demand (fleet, admin) are in cli.bundle.js but run only when
// configured.
//
// piscina is bundled into the command line, and its worker script is a bundle of its own,
// `worker.js`, the name piscina starts from the directory its code runs in: a worker thread then
// reads two files with their caches instead of resolving and compiling a dozen small ones (each
// 15–18 ms of the primary's start here, 4–8 ms of each worker's; docs/BENCHMARKS.md, start-up).
// Left as requires of their own: native addons, and packages loaded only when the config asks for
// them.

import { chmodSync, copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const { compile } = createRequire(import.meta.url)('./loadBundle.cjs');
const root = new URL('..', import.meta.url).pathname;
const outdir = `${root}dist/bundle`;
const entries = {
  cli: 'dist/src/cli.js',
  worker: 'node_modules/piscina/dist/worker.js',
  'serve-uws': 'dist/src/engine/uws/serveTask.js',
  'serve-native-free': 'dist/native-free/serveTask.js',
};
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
// The package is "type": "module"; the .js files of this one directory are CommonJS.
writeFileSync(`${outdir}/package.json`, '{ "type": "commonjs" }\n');
await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(entries).map(([name, source]) => [`${name}.bundle`, source])),
  outdir,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // Every import() becomes a require(): V8 keeps import()'s hook out of a code cache, so on Node 20
  // an import() in a bundle compiled from its cache fails (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING).
  supported: { 'dynamic-import': false },
  sourcemap: true,
  external: ['uWebSockets.js', 'bufferutil', 'utf-8-validate', '@napi-rs/nice', 'ioredis', 'prom-client', 'undici', 'yaml', 'pino-pretty'],
  // The sources are ES modules and find their files from import.meta.url.
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: "'use strict';\nconst importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
copyFileSync(`${root}scripts/loadBundle.cjs`, `${outdir}/load.js`);
for (const name of Object.keys(entries)) {
  const bundle = `${outdir}/${name}.bundle.js`;
  writeFileSync(`${bundle}.cache`, compile(bundle).createCachedData());
  const run = `require('./load.js').loadBundle(\`\${__dirname}/${name}.bundle.js\`, module)`;
  writeFileSync(`${outdir}/${name}.js`, name === 'cli' ? `#!/usr/bin/env node\n'use strict';\n${run};\n` : `'use strict';\nmodule.exports = ${run};\n`);
}
chmodSync(`${outdir}/cli.js`, 0o755);
