// The base images of a Dockerfile and the digests their references resolve to now: an input of the
// result key (core/result-key.ts), so a base image pushed again under the same tag rebuilds.

import type { PhaseContext } from '../core/ports.js';
import type { CommandRunner } from '../exec/run-command.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Instructions with line continuations joined and comments dropped. */
function instructions(text: string): string[] {
  const result: string[] = [];
  let current = '';
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim() !== '') result.push(current.trim());
    current = '';
  }
  if (current.trim() !== '') result.push(current.trim());
  return result;
}

/** `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` from `values`; unknown names become ''. */
export function substituteArgs(text: string, values: Readonly<Record<string, string>>): string {
  return text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced: string | undefined, op: string | undefined, word: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    const value = values[name];
    if (op === '-') return value ? value : word ?? '';
    if (op === '+') return value ? word ?? '' : '';
    return value ?? '';
  });
}

/**
 * The external images a Dockerfile's FROM lines name, in order, after ARG substitution (the ARGs
 * before the first FROM, overridden by `buildArgs`). Stages named by an earlier `AS` and `scratch`
 * are not external.
 */
export function externalBaseImages(dockerfile: string, buildArgs: Readonly<Record<string, string>> = {}): string[] {
  const args: Record<string, string> = {};
  const stages = new Set<string>();
  const images: string[] = [];
  let seenFrom = false;
  for (const instruction of instructions(dockerfile)) {
    const [keyword = '', ...rest] = instruction.split(/\s+/);
    const upper = keyword.toUpperCase();
    if (upper === 'ARG' && !seenFrom) {
      for (const decl of rest) {
        const eq = decl.indexOf('=');
        const name = eq < 0 ? decl : decl.slice(0, eq);
        const fallback = eq < 0 ? undefined : decl.slice(eq + 1).replace(/^(["'])(.*)\1$/, '$2');
        const value = buildArgs[name] ?? fallback;
        if (value !== undefined) args[name] = substituteArgs(value, args);
      }
      continue;
    }
    if (upper !== 'FROM') continue;
    seenFrom = true;
    const words = rest.filter((w) => !w.startsWith('--'));
    const image = substituteArgs(words[0] ?? '', args);
    const asIndex = words.findIndex((w) => w.toUpperCase() === 'AS');
    if (image !== '' && image.toLowerCase() !== 'scratch' && !stages.has(image.toLowerCase()) && !images.includes(image)) images.push(image);
    if (asIndex > 0 && words[asIndex + 1]) stages.add(words[asIndex + 1]!.toLowerCase());
  }
  return images;
}

export interface BaseDigestOptions {
  tlsVerify: boolean;
  authFile?: string;
}

/**
 * Resolves each image reference to its manifest digest with `skopeo inspect` (a reference that
 * pins a digest is taken as it is). Throws when one cannot be resolved: the caller does not reuse.
 */
export async function resolveBaseDigests(run: CommandRunner, images: readonly string[], options: BaseDigestOptions, ctx: PhaseContext): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  for (const image of images) {
    const pinned = /@(sha256:[0-9a-f]{64})$/.exec(image)?.[1];
    if (pinned) {
      digests[image] = pinned;
      continue;
    }
    const args = ['inspect', '--format', '{{.Digest}}', `--tls-verify=${options.tlsVerify}`];
    if (options.authFile) args.push('--authfile', options.authFile);
    args.push(`docker://${image}`);
    const result = await run('skopeo', args, { signal: ctx.signal, displayName: 'skopeo inspect' });
    const digest = result.stdout.trim();
    if (!DIGEST.test(digest)) throw new Error(`skopeo inspect of ${image} printed no digest`);
    digests[image] = digest;
  }
  return digests;
}
