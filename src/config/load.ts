// Reading a config file (YAML or JSON) and turning quick-mode flags into the same raw shape.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError, validateConfig, type Config } from './schema.js';

/** The YAML parser, loaded with the first file read (quick mode never needs it). */
let yaml: typeof import('yaml') | undefined;

/** Reads and parses a config file; throws ConfigError naming the file on any problem. */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${path}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  try {
    // YAML is a superset of JSON, so one parser reads both.
    yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
    return yaml.parse(text, { prettyErrors: true }) ?? {};
  } catch (err) {
    throw new ConfigError([`${path}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
}

export function loadConfigFile(path: string): Config {
  return validateConfig(readConfigFile(path));
}
