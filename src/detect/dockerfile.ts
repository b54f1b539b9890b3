// Finding and sanity-checking a project's Dockerfile before any build time is spent on it.

import { lstatSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { BuildFailedError } from '../core/errors.js';

/** Looked for in this order; the first that exists is used. */
export const DOCKERFILE_NAMES = ['Dockerfile', 'Containerfile'] as const;

export function dockerfileCandidates(projectDir: string): string[] {
  return DOCKERFILE_NAMES.map((name) => join(projectDir, name));
}

/**
 * The first candidate present, or undefined. A dangling link counts as present, so it is reported
 * as unreadable rather than silently ignored.
 */
export function findDockerfile(projectDir: string): string | undefined {
  return dockerfileCandidates(projectDir).find((path) => {
    try {
      lstatSync(path);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Throws BuildFailedError unless `file` is a readable file inside `projectDir` whose first
 * instruction (after comments, blank lines and parser directives) is FROM or ARG.
 */
export async function validateDockerfile(file: string, projectDir: string): Promise<void> {
  let real: string;
  try {
    real = await realpath(file);
  } catch (err) {
    throw new BuildFailedError(`Cannot read the Dockerfile ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
      hint: 'Make it a regular file (a link must point inside the repository).',
    });
  }
  // A link to a file outside the repository would let a pushed commit read the build host's files.
  const root = await realpath(projectDir);
  const rel = relative(root, real);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new BuildFailedError(`The Dockerfile ${file} is a link to ${real}, outside the repository`, {
      hint: 'Make the Dockerfile a regular file in the repository.',
    });
  }
  let text: string;
  try {
    text = await readFile(real, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BuildFailedError(`Cannot read the Dockerfile ${file}: ${code === 'EISDIR' ? 'it is a directory' : code ?? (err as Error).message}`, {
      cause: err,
      hint: 'Make it a regular, readable file.',
    });
  }
  const first = firstInstruction(text);
  if (!first) {
    throw new BuildFailedError(`The Dockerfile ${file} has no instructions`, { hint: 'Start it with a FROM instruction, e.g. `FROM scratch`.' });
  }
  if (first.keyword !== 'FROM' && first.keyword !== 'ARG') {
    throw new BuildFailedError(
      `The Dockerfile ${file} is not valid: line ${first.line} starts with ${JSON.stringify(first.keyword)}; the first instruction must be FROM (or ARG before FROM)`,
      { hint: 'Start it with a FROM instruction, e.g. `FROM scratch`.', details: { dockerfile: file, line: first.line } },
    );
  }
}

/** The first instruction's keyword (upper case) and 1-based line; parser directives are comments. */
export function firstInstruction(text: string): { keyword: string; line: number } | undefined {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const keyword = line.split(/\s+/, 1)[0]!.toUpperCase();
    return { keyword, line: i + 1 };
  }
  return undefined;
}
