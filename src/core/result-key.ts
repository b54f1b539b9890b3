// The result key of a project: a digest of everything that decides its image, computed before any
// toolchain runs. Two builds with one key give one image, so the second reuses the first's.
// Pure: the adapters (src/cache/build-results.ts) gather the inputs; nothing here reads a file.

import { createHash } from 'node:crypto';

/**
 * Everything that goes into a project's image. No absolute path belongs here: the same commit in
 * two work directories (two workers) must give the same key.
 */
export interface ResultKeyInputs {
  /** oci-build's own version: the default build commands and buildah flags are part of it. */
  ociBuildVersion: string;
  /**
   * The project as detect left it (its name, root, language, build command and any setting a
   * per-repository file adds), with paths relative to the workspace.
   */
  project: Record<string, unknown>;
  /** Git object ids by path (relative to the repository root): the project's root, what it depends on, the Dockerfile and context when outside it. */
  trees: Record<string, string>;
  /** The Dockerfile and the build context, relative to the workspace. */
  dockerfile: string;
  context: string;
  buildArgs: Record<string, string>;
  /** The environment that reaches the build command, less what differs between runs (paths of the work directory, HOME). */
  env: Record<string, string>;
  /** `go version`, `mvn -v`, … by tool. */
  toolchains: Record<string, string>;
  /** Each external FROM image (after ARG substitution) → the digest it resolves to now. */
  baseImages: Record<string, string>;
  /** The labels that do not follow from the rest of the key (the source URL). */
  labels: Record<string, string>;
  /** The image's repository (registry prefix included). */
  repository: string;
}

/** Bumped when the meaning of the inputs changes, so old index entries stop matching. */
const KEY_FORMAT = 'oci-build-result/1';

/** JSON with object keys sorted at every level: one value, one text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The key: 64 hex digits (a valid KV key and file name). */
export function resultKey(inputs: ResultKeyInputs): string {
  return sha256(`${KEY_FORMAT}\n${canonicalJson(inputs)}`);
}

/**
 * What an index entry says about the inputs, for debugging a miss: the trees, toolchains and base
 * digests as they are, and only digests of what may hold secrets (build args, the environment).
 */
export function resultKeySummary(inputs: ResultKeyInputs): Record<string, unknown> {
  return {
    ociBuildVersion: inputs.ociBuildVersion,
    trees: inputs.trees,
    dockerfile: inputs.dockerfile,
    context: inputs.context,
    toolchains: inputs.toolchains,
    baseImages: inputs.baseImages,
    repository: inputs.repository,
    project: sha256(canonicalJson(inputs.project)).slice(0, 16),
    buildArgs: sha256(canonicalJson(inputs.buildArgs)).slice(0, 16),
    env: sha256(canonicalJson(inputs.env)).slice(0, 16),
    labels: sha256(canonicalJson(inputs.labels)).slice(0, 16),
  };
}
