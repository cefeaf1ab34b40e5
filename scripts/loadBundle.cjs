'use strict';
// Copied by scripts/bundle.mjs to dist/bundle/load.js. Runs one CommonJS bundle as require() would,
// but compiled with the V8 code cache written beside it at build time (FILE.cache): V8 then skips
// parsing the bundle, which each process and worker thread would otherwise spend 9–13 ms on at
// every start (docs/BENCHMARKS.md, start-up). A cache that does not fit this Node (another V8,
// other flags) or a missing one is rejected by V8, and the file compiles as usual.

const { readFileSync } = require('node:fs');
const Module = require('node:module');
const { dirname } = require('node:path');
const { Script } = require('node:vm');

/** The bundle as a script of one function, the wrapper require() puts around a CommonJS file. */
function compile(filename, cachedData) {
  const source = readFileSync(filename, 'utf8').replace(/^#!.*/, '');
  // A bundle has no import() (scripts/bundle.mjs): a script compiled from a cache made in another
  // process has lost the hook import() needs.
  return new Script(Module.wrap(source), { filename, cachedData });
}

/** Runs the bundle FILENAME on behalf of the module PARENT; returns its exports. */
function loadBundle(filename, parent) {
  let cachedData;
  try {
    cachedData = readFileSync(`${filename}.cache`);
  } catch {
    // None: compiled from source.
  }
  const module = new Module(filename, parent);
  module.filename = filename;
  compile(filename, cachedData).runInThisContext()(module.exports, Module.createRequire(filename), module, filename, dirname(filename));
  module.loaded = true;
  return module.exports;
}

module.exports = { compile, loadBundle };
