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

for (const source of [...sources('src'), ...sources('native-free')]) {
  const built = join(root, 'dist', source.replace(/\.ts$/, '.js'));
  let builtAt = 0;
  try {
    builtAt = statSync(built).mtimeMs;
  } catch {
    // Not built at all.
  }
  if (builtAt < statSync(join(root, source)).mtimeMs) {
    throw new Error(`dist/ is older than ${relative(root, join(root, source))}: run \`npm run build\` first (\`npm test\` does)`);
  }
}
