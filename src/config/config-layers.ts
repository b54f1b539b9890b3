// The layers of the configuration before validation: the keys the schema defines (each with its
// environment variable), the environment read into a layer, and the deep merge of defaults < file
// < environment < flags that remembers where every key came from (so a problem names its source).
// Pure: config.ts validates and compiles what this gives.

import { createRequire } from 'node:module';
import type { ConfigIssue } from '../core/errors.js';

export const ENV_PREFIX = 'OCI_BUILD_';

const require = createRequire(import.meta.url);
type JsonSchema = { type?: string; properties?: Record<string, JsonSchema>; $ref?: string; items?: JsonSchema; additionalProperties?: unknown };
/** The shipped schema (schema/oci-build.config.schema.json), also used by editors. */
export const CONFIG_SCHEMA = require('../../schema/oci-build.config.schema.json') as JsonSchema & { definitions: Record<string, JsonSchema> };

export interface ConfigLeaf {
  /** Dotted path, e.g. `nats.statusBucket`. */
  path: string;
  /** `OCI_BUILD_NATS_STATUS_BUCKET`. */
  env: string;
  type: 'string' | 'integer' | 'boolean' | 'array';
}

/** Every settable key with its environment variable, read from the schema (one source of truth). */
export function configLeaves(schema: JsonSchema = CONFIG_SCHEMA, prefix = ''): ConfigLeaf[] {
  const leaves: ConfigLeaf[] = [];
  for (const [key, sub] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (sub.type === 'object') {
      if (sub.properties) leaves.push(...configLeaves(sub, path));
      continue; // maps (build.projects) have no environment variable
    }
    const type = sub.$ref ? 'string' : (sub.type as ConfigLeaf['type']);
    leaves.push({ path, env: envName(path), type });
  }
  return leaves;
}

export function envName(path: string): string {
  return ENV_PREFIX + path.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Where each merged key came from: a layer's label (`environment`, `flags`, `file PATH`). */
export type ConfigOrigin = Map<string, string>;

/** Merges the layers in order (later wins), recording each key's origin. */
export function mergeLayers(layers: ReadonlyArray<readonly [label: string, layer: Record<string, unknown>]>): { merged: Record<string, unknown>; origin: ConfigOrigin } {
  const merged: Record<string, unknown> = {};
  const origin: ConfigOrigin = new Map();
  for (const [label, layer] of layers) deepMerge(merged, layer, '', label, origin);
  return { merged, origin };
}

/** The environment as a layer: every `OCI_BUILD_…` variable the schema knows, typed; bad booleans become issues. */
export function envLayer(env: Record<string, string | undefined>, issues: ConfigIssue[]): Record<string, unknown> {
  const layer: Record<string, unknown> = {};
  for (const leaf of configLeaves()) {
    const value = env[leaf.env];
    if (value === undefined || value === '') continue;
    let parsed: unknown = value;
    if (leaf.type === 'integer') {
      parsed = /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
    } else if (leaf.type === 'boolean') {
      const lower = value.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(lower)) parsed = true;
      else if (['false', '0', 'no', 'off'].includes(lower)) parsed = false;
      else {
        issues.push({ path: leaf.path, message: `must be true or false, got ${JSON.stringify(value)}`, source: leaf.env });
        continue;
      }
    } else if (leaf.type === 'array') {
      parsed = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    }
    setPath(layer, leaf.path, parsed);
  }
  return layer;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>, prefix: string, label: string, origin: Map<string, string>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    if (isPlainObject(value) && (isPlainObject(target[key]) || target[key] === undefined)) {
      if (target[key] === undefined) target[key] = {};
      origin.set(path, label);
      deepMerge(target[key] as Record<string, unknown>, value, path, label, origin);
    } else {
      target[key] = value;
      origin.set(path, label);
    }
  }
}

/** Where the value at `path` came from, as a problem should name it (an environment variable by its name). */
export function sourceOf(path: string, origin: Map<string, string>): string | undefined {
  for (let p = path; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
    const label = origin.get(p);
    if (label) return label === 'environment' ? envName(path) : label;
  }
  return undefined;
}

