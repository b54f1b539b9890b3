// Writes the V8 code cache of every chunk of the single executable (scripts/sea.mjs) after the
// chunk has been evaluated, not merely compiled: V8 compiles a function only when it is first
// called, and a cache made right after compiling holds the top-level code alone, so every function
// a module calls while it loads (isomorphic-git's, execa's, commander's option parsing…) was
// compiled again from source at every start. Evaluated here, in a process of its own with the same
// node binary (a cache is only accepted by the V8 that made it), those functions are in the cache.
//
// Evaluating a chunk only defines things (a module's top level); nothing runs a command. Every
// chunk is loaded the way the executable loads it (scripts/sea.mjs chunkLoader): wrapped in the
// same function, given the same parameters, its `__seaChunk` dependencies loaded first.
//
// Usage: node scripts/sea-code-cache.cjs CHUNKS_DIR PARAMS ENTRY_CHUNK

'use strict';
const { readdirSync, readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const [dir, params, entry] = process.argv.slice(2);
const wrap = (source) => `(function (${params}) {${source}\n})`;
const scripts = new Map();
const loaded = new Map();

/**
 * The entry chunk is what other chunks share with it (rolldown puts common modules there). It is
 * evaluated as while the snapshot is made (node:v8 says so): it then runs `--help` into a sink,
 * never a command; its exports are made this module's (its loader keeps them in the `var … = {}`
 * it starts with, scripts/sea.mjs chunkLoader, minified).
 */
const snapshotV8 = { ...require('node:v8'), startupSnapshot: { isBuildingSnapshot: () => true, setDeserializeMainFunction() {}, addSerializeCallback() {}, addDeserializeCallback() {} } };
const entryRequire = (id) => (id === 'node:v8' || id === 'v8' ? snapshotV8 : require(id));

function load(name) {
  const known = loaded.get(name);
  if (known) return known.exports;
  const module = { exports: {} };
  loaded.set(name, module);
  const isEntry = name === entry;
  const source = readFileSync(join(dir, name), 'utf8');
  const script = new Script(wrap(isEntry ? source.replace(/^var ([\w$]+)=\{\},/, 'var $1=module.exports,') : source), { filename: name });
  if (!isEntry) scripts.set(name, script);
  script.runInThisContext().call(module.exports, module.exports, isEntry ? entryRequire : require, module, join(dir, name), dir, load);
  return module.exports;
}

const names = readdirSync(dir).filter((f) => f.endsWith('.cjs') && f !== entry);
for (const name of names) {
  try {
    load(name);
  } catch (err) {
    // A chunk that cannot be evaluated here still gets the cache of its compiled top level.
    process.stderr.write(`sea-code-cache: ${name} not evaluated (${err && err.message}); its cache holds its top level only\n`);
  }
}
for (const name of names) {
  const script = scripts.get(name) ?? new Script(wrap(readFileSync(join(dir, name), 'utf8')), { filename: name });
  writeFileSync(join(dir, `${name}.cache`), script.createCachedData());
}
