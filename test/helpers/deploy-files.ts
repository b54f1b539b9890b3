// The deployment files under deploy/ as the tests read them: docker-compose's own resolved view of
// compose.yaml (set up the way its header tells a user to), the Kubernetes manifests, the systemd
// units' keys, and every OCI_BUILD_* name they mention.

import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { cp, writeFile, copyFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT, tempDir } from './fixtures.js';

export const DEPLOY_DIR = join(REPO_ROOT, 'deploy');
export interface ComposeService {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  ports?: Array<string | { target: number; published?: number }>;
  deploy?: { replicas?: number };
  stop_grace_period?: string;
  cap_add?: string[];
  security_opt?: string[];
  secrets?: Array<{ source: string; target: string }>;
}

export interface ComposeConfig {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
}

/** Runs a tool (docker-compose, systemd-analyze, promtool) to its end; `input` goes to its stdin. */
export function runTool(file: string, args: string[], options: { cwd?: string; input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    const child = execFile(file, args, { cwd: options.cwd, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolveRun({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
    // A tool may answer before it has read all its input.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input ?? '');
  });
}

/**
 * `docker-compose config` on a copy of deploy/ prepared as compose.yaml's header says (the example
 * env file copied to oci-build.env, an empty registry auth file): the file as Compose reads it,
 * anchors merged and the env file folded into each service's environment.
 */
export async function resolvedCompose(): Promise<{ config: ComposeConfig; code: number; stderr: string }> {
  const dir = await tempDir('oci-build-compose-');
  try {
    await cp(DEPLOY_DIR, dir.path, { recursive: true });
    await copyFile(join(dir.path, 'oci-build.env.example'), join(dir.path, 'oci-build.env'));
    await writeFile(join(dir.path, 'registry-auth.json'), '{"auths":{}}\n');
    const result = await runTool('docker-compose', ['-f', 'compose.yaml', 'config'], { cwd: dir.path });
    return { config: (result.code === 0 ? parse(result.stdout) : { services: {} }) as ComposeConfig, code: result.code, stderr: result.stderr };
  } finally {
    await dir.cleanup();
  }
}

/** Every file under deploy/, as paths relative to it. */
export function deployFiles(dir = DEPLOY_DIR): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? deployFiles(path) : [relative(DEPLOY_DIR, path)];
  });
}

export function readDeployFile(path: string): string {
  return readFileSync(join(DEPLOY_DIR, path), 'utf8');
}

/** Every `OCI_BUILD_…` word in a deployment file: names, values and comments alike. */
export function ociBuildNames(text: string): string[] {
  return [...new Set(text.match(/\bOCI_BUILD_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9])/g) ?? [])];
}

/** Kubernetes objects of one manifest file (every YAML document of it). */
export function kubernetesObjects(path: string): Array<Record<string, any>> {
  return parseAllDocuments(readDeployFile(path))
    .map((doc) => doc.toJS() as Record<string, any> | null)
    .filter((object): object is Record<string, any> => object !== null);
}

/** The `Key=value` lines of a systemd unit, per key in order (`Environment` keeps every line). */
export function unitKeys(path: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const line of readDeployFile(path).split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    keys.set(match[1]!, [...(keys.get(match[1]!) ?? []), match[2]!]);
  }
  return keys;
}

/** `NAME=value` lines (an env file, or systemd's `Environment=` values) as a record. */
export function envAssignments(lines: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of lines) {
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) env[match[1]!] = match[2]!;
  }
  return env;
}
