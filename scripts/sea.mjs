// Writes dist/oci-build: a Node single executable application (SEA) with a V8 startup snapshot, so
// oci-build runs with no Node install and no node_modules. Called by `npm run build` after tsc.
//
// 1. rolldown bundles bin/oci-build-sea.js and the whole CLI (dist/cli, every dependency, the
//    package version and the config schema) into CommonJS chunks: in a SEA `require` loads only
//    Node's built-in modules. The entry chunk (commander, the command table) is the SEA's main
//    script, run once at build time to take the V8 startup snapshot; every other chunk (one per
//    command and what they share) is a SEA asset with its V8 code cache, compiled when a command
//    first requires it (see chunksFromAssets). A start deserialises the whole snapshot, so the
//    smaller it is the closer `oci-build --version` is to `node -e 0`.
// 2. `createRequire(import.meta.url)` (isomorphic-git, the ajv runtime helper, package.json, the
//    schema) is turned into a plain `require`, which rolldown bundles like any import.
// 3. Built-in modules that Node does not support in a snapshot (http fails outright; tls, net's
//    users, child_process, tty, worker_threads are "not verified") are required at their first
//    use instead of when the script starts: a lazy stand-in loads the real module on its first
//    property access, which happens after deserialisation.
// 4. node --experimental-sea-config makes the blob, postject injects it into a copy of the node
//    binary.
//
// Nothing a module computes at load time may depend on the build machine: the snapshot evaluates
// only the entry chunk and the chunks it requires at its top level (rolldown's runtime, what
// src/cli/main.ts imports statically: commander, core/errors, core/secrets); loggers, chalk's
// colour detection, hostnames and clocks are all read at run time (test/e2e/sea-runtime-state.test.ts).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { build } from 'rolldown';
import { isomorphicGitNodeSha1 } from './sea-isomorphic-git.mjs';
import { trainCodeCaches } from './sea-train.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'dist/oci-build');
const digestFile = join(root, 'dist/oci-build.inputs-sha256');
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/** Built-ins Node 20 loads in a snapshot without a warning; every other one is loaded lazily. */
const SNAPSHOT_SAFE = new Set([
  'assert', 'buffer', 'crypto', 'diagnostics_channel', 'dns', 'events', 'fs', 'fs/promises', 'net', 'os', 'path',
  'process', 'querystring', 'stream', 'stream/promises', 'string_decoder', 'timers', 'timers/promises', 'url', 'util', 'v8', 'zlib',
]);

/** Lets `require(x)` of a module that used `createRequire(import.meta.url)` be bundled. */
const bareRequire = {
  name: 'bare-require',
  transform(code) {
    if (!code.includes('createRequire(import.meta.url)')) return null;
    return code.replace(/const require = createRequire\(import\.meta\.url\);/g, '');
  },
};

const LAZY = '\0lazy-builtin:';
const LAZY_RUNTIME = '\0lazy-builtin-runtime';

/**
 * Each snapshot-unsafe built-in becomes a small CommonJS module whose export is a stand-in: a
 * Proxy that requires the real module on its first trap. Its own properties are copied onto the
 * target when something enumerates them (rolldown's ES-import interop does), which keeps the
 * Proxy invariants. As CommonJS the module runs where it is first required, not when the script
 * starts; the stand-in defers the real load further, to the first property access.
 */
const lazyBuiltins = {
  name: 'lazy-builtins',
  resolveId(id, importer) {
    if (id === LAZY_RUNTIME) return id;
    if (!isBuiltin(id) || SNAPSHOT_SAFE.has(bare(id)) || importer?.startsWith(LAZY)) return null;
    return LAZY + id;
  },
  load(id) {
    if (id === LAZY_RUNTIME) {
      return `module.exports = (id) => {
  let real;
  let copied = false;
  const target = {};
  const load = () => (real ??= require(id));
  const copy = () => { if (!copied) { copied = true; Object.defineProperties(target, Object.getOwnPropertyDescriptors(load())); } };
  return new Proxy(target, {
    get: (_, key) => load()[key],
    has: (_, key) => key in load(),
    set: (_, key, value) => { load()[key] = value; return true; },
    ownKeys: () => (copy(), Reflect.ownKeys(target)),
    getOwnPropertyDescriptor: (_, key) => (copy(), Reflect.getOwnPropertyDescriptor(target, key)),
    getPrototypeOf: () => Object.getPrototypeOf(load()),
  });
};`;
    }
    if (!id.startsWith(LAZY)) return null;
    return `module.exports = require(${JSON.stringify(LAZY_RUNTIME)})(${JSON.stringify(id.slice(LAZY.length))});`;
  },
};

/**
 * The executable validates its configuration with the validator precompiled from the schema
 * (src/config/config-schema-validator.generated.ts), and so leaves out ajv's compiler (~230 KB
 * with fast-uri: a few ms of every start, in the snapshot). Only while that validator was
 * generated from the schema the executable embeds; otherwise the compiler stays in, as
 * config-validator.ts falls back to it, and the build says so. The runtime helpers the
 * precompiled code requires are always in.
 */
function withoutAjvCompiler() {
  const schema = JSON.parse(readFileSync(join(root, 'schema/oci-build.config.schema.json'), 'utf8'));
  const sha = createHash('sha256').update(JSON.stringify(schema)).digest('hex');
  const generated = readFileSync(join(root, 'src/config/config-schema-validator.generated.ts'), 'utf8');
  if (!generated.includes(JSON.stringify(sha))) {
    console.error('scripts/sea.mjs: the precompiled config validator is older than the schema (regenerate it, see src/config/config-validator.ts); ajv is bundled meanwhile');
    return { name: 'without-ajv-compiler' };
  }
  return {
    name: 'without-ajv-compiler',
    resolveId: (id) => (id === 'ajv' || id === 'ajv/dist/standalone' ? AJV_STUB : null),
    load: (id) =>
      id === AJV_STUB
        ? `module.exports = { default: function () { throw new Error('oci-build (single executable): ajv is not included; the configuration is checked by the validator precompiled from the schema embedded at build time'); } };`
        : null,
  };
}
const AJV_STUB = '\0ajv-compiler-stub';

/**
 * Only the entry chunk (bin/oci-build-sea.js, commander, the command table: what `--version` and
 * `--help` run) is in the snapshot: a start deserialises the whole snapshot, and with the whole
 * CLI in it `--version` cost 1.5× `node -e 0` in CPU, against 1.0× with the entry alone. Every
 * other chunk (one per command, and what they share) is a SEA asset, compiled with its code cache
 * when a command first requires it. The chunks' `require("./x.cjs")` become `__seaChunk("x.cjs")`.
 */
const ENTRY_CHUNK = 'main.cjs';
// __filename and __dirname (rolldown's import.meta.url in CommonJS) name the chunk as if it lay
// beside the executable: there is no file there, as there is none beside a moved executable.
const CHUNK_PARAMS = 'exports, require, module, __filename, __dirname, __seaChunk';
const wrapChunk = (source) => `(function (${CHUNK_PARAMS}) {${source}\n})`;
// While the snapshot is made (the entry runs once at build time) the chunks it requires at its
// top level (rolldown's runtime helpers, what main.ts imports) are read from the build directory
// and end up in the snapshot, already evaluated; in the executable they come from the assets.
const chunkLoader = (chunksDir) => `var exports = {};
var __seaChunk = ((entry, builtinRequire) => {
  const loaded = new Map([[${JSON.stringify(ENTRY_CHUNK)}, entry]]);
  // Asked at each load, never kept: the snapshot is made while it is true.
  const building = () => builtinRequire('node:v8').startupSnapshot.isBuildingSnapshot();
  let sea, vm, training;
  // The assets are read in place (getRawAsset: getAsset copies each one) and an ASCII chunk, as
  // most are, is decoded as Latin-1: the same text, a one-byte string made without UTF-8 decoding.
  const source = (name) => {
    if (building()) return builtinRequire('node:fs').readFileSync(${JSON.stringify(chunksDir)} + '/' + name, 'utf8');
    const bytes = Buffer.from(sea.getRawAsset(name));
    return bytes.toString(builtinRequire('node:buffer').isAscii(bytes) ? 'latin1' : 'utf8');
  };
  // OCI_BUILD_SEA_TRAIN_DIR (scripts/sea-train.mjs, at build time): a chunk's code cache is read
  // from that directory (the embedded one when it has none), and written back there with what the
  // run compiled when the process exits. A cache V8 refused is said on stderr.
  const cacheOf = (name, trainDir) => {
    const file = trainDir + '/' + name + '.cache';
    return trainDir && builtinRequire('node:fs').existsSync(file) ? builtinRequire('node:fs').readFileSync(file) : Buffer.from(sea.getRawAsset(name + '.cache'));
  };
  const train = (trainDir, name, script) => {
    if (script.cachedDataRejected) process._rawDebug('oci-build: the code cache of ' + name + ' was rejected');
    if (!training) {
      training = new Map();
      process.once('exit', () => { for (const [chunkName, chunkScript] of training) builtinRequire('node:fs').writeFileSync(trainDir + '/' + chunkName + '.cache', chunkScript.createCachedData()); });
    }
    training.set(name, script);
  };
  return function load(name) {
    const known = loaded.get(name);
    if (known) return known.exports;
    const module = { exports: {} };
    loaded.set(name, module);
    let chunk;
    if (building()) {
      // node:vm is not for snapshots; nor is a code cache needed once.
      chunk = new Function(${JSON.stringify(CHUNK_PARAMS)}, source(name));
    } else {
      sea ??= builtinRequire('node:sea');
      vm ??= builtinRequire('node:vm');
      const trainDir = process.env.OCI_BUILD_SEA_TRAIN_DIR;
      const script = new vm.Script(\`(function (${CHUNK_PARAMS}) {\${source(name)}\\n})\`, { filename: name, cachedData: cacheOf(name, trainDir) });
      if (trainDir) train(trainDir, name, script);
      chunk = script.runInThisContext();
    }
    const dir = builtinRequire('node:path').dirname(process.execPath);
    chunk.call(module.exports, module.exports, builtinRequire, module, dir + '/' + name, dir, load);
    return module.exports;
  };
})({ exports }, require);
`;
const chunksFromAssets = {
  name: 'chunks-from-assets',
  renderChunk(code, chunk, options) {
    const replaced = code.replace(/\brequire\((["'`])\.\/([^"'`]+\.cjs)\1\)/g, (_, _q, name) => `__seaChunk(${JSON.stringify(name)})`);
    return chunk.fileName === ENTRY_CHUNK ? chunkLoader(options.dir) + replaced : replaced;
  },
};

const bare = (id) => id.replace(/^node:/, '');
const isBuiltin = (id) => BUILTINS.has(bare(id));
const { builtinModules } = await import('node:module');
const BUILTINS = new Set(builtinModules);

/**
 * A digest of everything the executable is made from: the compiled CLI (dist/, after tsc), the
 * entry points, this script, the schema, the dependency lock and the node binary. `--if-stale`
 * (the test helpers) skips the build when dist/oci-build was made from the same inputs.
 */
export function inputsDigest() {
  const hash = createHash('sha256').update(process.version).update(process.execPath);
  const files = [
    ...listFiles(join(root, 'dist')).filter((f) => f.endsWith('.js') && !/[\\/]dist[\\/](bundle|sea)/.test(f)),
    ...['bin/oci-build-sea.js', 'bin/run-cli.js', 'scripts/sea.mjs', 'scripts/sea-code-cache.cjs', 'scripts/sea-isomorphic-git.mjs', 'scripts/sea-train.mjs', 'package.json', 'package-lock.json', 'schema/oci-build.config.schema.json'].map((f) => join(root, f)),
  ].sort();
  for (const file of files) hash.update(file).update('\0').update(readFileSync(file)).update('\0');
  return hash.digest('hex');
}

function listFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name));
}

export async function buildSea({ ifStale = false } = {}) {
  const started = Date.now();
  const digest = inputsDigest();
  if (ifStale && existsSync(output) && existsSync(digestFile) && readFileSync(digestFile, 'utf8') === digest) return;
  // A private work directory and an atomic rename: two builds at once (two test files, another
  // engineer's `npm run build`) never read or run a half-written executable.
  mkdirSync(join(root, 'dist'), { recursive: true });
  const workDir = mkdtempSync(join(root, 'dist/.sea-'));
  const chunksDir = join(workDir, 'chunks');
  const script = join(chunksDir, ENTRY_CHUNK);
  const blob = join(workDir, 'oci-build.blob');
  const partial = join(workDir, 'oci-build');
  try {
    await build({
      input: join(root, 'bin/oci-build-sea.js'),
      platform: 'node',
      logLevel: 'warn',
      plugins: [bareRequire, withoutAjvCompiler(), isomorphicGitNodeSha1, lazyBuiltins, chunksFromAssets],
      // Minified: less source to keep in the snapshot and in the assets. Names are kept: errors
      // are reported by their class's name (--json).
      output: {
        dir: chunksDir,
        format: 'cjs',
        entryFileNames: ENTRY_CHUNK,
        chunkFileNames: '[name]-[hash].cjs',
        keepNames: true,
        minify: { mangle: { keepNames: true }, compress: { keepNames: { function: true, class: true } } },
      },
    });

    // Every other chunk is an asset, with V8's code cache for it made by this same node binary
    // after the chunk was evaluated (scripts/sea-code-cache.cjs: the functions a module runs while
    // it loads are in it too).
    const chunks = readdirSync(chunksDir).filter((f) => f !== ENTRY_CHUNK);
    const trained = spawnSync(process.execPath, [join(root, 'scripts/sea-code-cache.cjs'), chunksDir, CHUNK_PARAMS, ENTRY_CHUNK], { encoding: 'utf8' });
    if (trained.status !== 0) process.stderr.write(`scripts/sea.mjs: evaluated code caches not made (${trained.stderr.trim()}); compiled ones instead\n`);
    else if (trained.stderr) process.stderr.write(trained.stderr);
    const assets = {};
    for (const name of chunks) {
      const file = join(chunksDir, name);
      const cache = `${file}.cache`;
      if (trained.status !== 0 || !existsSync(cache)) writeFileSync(cache, new Script(wrapChunk(readFileSync(file, 'utf8')), { filename: name }).createCachedData());
      assets[name] = file;
      assets[`${name}.cache`] = cache;
    }

    const config = join(workDir, 'sea-config.json');
    writeFileSync(config, JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true, useSnapshot: true, assets }));
    // The executable is made twice: the first one runs the training commands, which update the
    // chunks' caches in place (scripts/sea-train.mjs); the second one embeds them.
    makeExecutable(config, blob, partial);
    const untrained = await trainCodeCaches({ root, executable: partial, cacheDir: chunksDir });
    for (const failure of untrained) process.stderr.write(`scripts/sea.mjs: code caches not trained on ${failure}\n`);
    makeExecutable(config, blob, partial);
    renameSync(partial, output);
    writeFileSync(digestFile, digest);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  const mb = (statSync(output).size / 1024 / 1024).toFixed(1);
  console.error(`dist/oci-build: ${mb} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** The SEA blob from `config`, injected into a copy of this node binary at `executable`. */
function makeExecutable(config, blob, executable) {
  // Node warns when a script required a built-in it has not verified for snapshots: that module
  // must be added to the lazy ones, not shipped half-restored.
  const made = spawnSync(process.execPath, ['--experimental-sea-config', config], { encoding: 'utf8' });
  const unverified = [...made.stderr.matchAll(/built-in module "([^"]+)" works in user snapshot/g)].map((m) => m[1]);
  if (made.status !== 0 || unverified.length > 0) {
    process.stderr.write(made.stderr);
    throw new Error(made.status !== 0 ? 'making the SEA blob failed' : `the snapshot loaded built-ins Node does not support in snapshots: ${unverified.join(', ')}`);
  }
  copyFileSync(process.execPath, executable);
  chmodSync(executable, 0o755);
  // postject prints harmless ELF note warnings: shown only when it fails.
  const injected = spawnSync(process.execPath, [join(root, 'node_modules/postject/dist/cli.js'), executable, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SENTINEL_FUSE], { encoding: 'utf8' });
  if (injected.status !== 0) {
    process.stderr.write(injected.stderr + injected.stdout);
    throw new Error('postject could not inject the SEA blob');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildSea({ ifStale: process.argv.includes('--if-stale') });
