// The command line of a built checkout, as its package.json names it (`bin`), so a comparison
// with an older checkout starts that checkout's CLI wherever it lived then.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export function cliOf(tree) {
  const { bin } = JSON.parse(readFileSync(join(tree, 'package.json'), 'utf8'));
  return join(tree, typeof bin === 'string' ? bin : bin.fairway);
}
