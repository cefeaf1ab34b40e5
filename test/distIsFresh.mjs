// Loaded by ava before every test file: the tests import dist/, so a source edited since the last
// build would be tested stale. Refuse to run instead (`npm test` builds first).

import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function* sources(dir) {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

function builtAt(file) {
  try {
    return statSync(join(root, file)).mtimeMs;
  } catch {
    return 0; // Not built at all.
  }
}

// The CLI and the workers run the bundles of dist/ (scripts/bundle.mjs), so they must be newer
// than every source too.
const bundles = ['dist/bundle/cli.bundle.js', 'dist/bundle/serve-uws.bundle.js', 'dist/bundle/serve-native-free.bundle.js'];
for (const source of [...sources('src'), ...sources('native-free')]) {
  const editedAt = statSync(join(root, source)).mtimeMs;
  for (const built of [join('dist', source.replace(/\.ts$/, '.js')), ...bundles]) {
    if (builtAt(built) < editedAt) {
      throw new Error(`${built} is older than ${source}: run \`npm run build\` first (\`npm test\` does)`);
    }
  }
}
