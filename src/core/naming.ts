// Image names, tags and labels (DESIGN.md, "Images"). Pure functions.

import type { RepositoryInfo } from './types.js';

/** The OCI distribution spec's tag grammar. */
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** One path component of an OCI repository name. */
export const PATH_COMPONENT_PATTERN = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

/**
 * Turns a branch or tag name into a valid image tag: runs of characters outside `[A-Za-z0-9_.-]`
 * become one `-`, leading `.` and `-` are dropped, the result is cut at 128 characters.
 * Returns undefined when nothing usable is left (the sha tag still identifies the image).
 */
export function sanitizeTag(name: string): string | undefined {
  const replaced = name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[.-]+/, '');
  const cut = replaced.slice(0, 128);
  return cut.length > 0 && TAG_PATTERN.test(cut) ? cut : undefined;
}

/** Lowercases a name and makes it one valid OCI path component (`my_App.Git` → `my_app.git`). */
export function sanitizePathComponent(name: string): string {
  const component = name
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    // separators may not repeat (except `__` and runs of `-`), nor start or end the component
    .replace(/[._-]*\.[._-]*/g, '.')
    .replace(/_{3,}/g, '__')
    .replace(/(?:_-|-_)[_-]*/g, '-')
    .replace(/^[._-]+|[._-]+$/g, '');
  return component.length > 0 && PATH_COMPONENT_PATTERN.test(component) ? component : 'app';
}

/** The repository's name from a clone URL or a path: last segment without `.git`. */
export function repositoryNameFrom(urlOrPath: string): string {
  const trimmed = urlOrPath.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const last = trimmed.slice(trimmed.lastIndexOf('/') + 1) || trimmed;
  return last.replace(/\.git$/i, '');
}

/**
 * `registry/name` or `registry/name/project` (monorepos); `registry/image` when the repository's
 * `.oci-build.yaml` names the image (validated as OCI path components by its schema).
 */
export function imageRepository(options: { registry?: string; name: string; project?: string; image?: string }): string {
  const parts = options.image !== undefined ? [options.image] : [sanitizePathComponent(options.name)];
  if (options.project !== undefined && options.image === undefined) parts.push(sanitizePathComponent(options.project));
  const prefix = options.registry?.replace(/\/+$/, '');
  return prefix ? `${prefix}/${parts.join('/')}` : parts.join('/');
}

export function shortSha(commit: string): string {
  return commit.slice(0, 7);
}

/** `sha-abc1234` (`-dirty` for a worktree with changes) and the branch or tag name. */
export function imageTags(repository: Pick<RepositoryInfo, 'commit' | 'branch' | 'tag' | 'dirty'>): string[] {
  const tags = [`sha-${shortSha(repository.commit)}${repository.dirty ? '-dirty' : ''}`];
  for (const name of [repository.branch, repository.tag]) {
    if (!name) continue;
    const tag = sanitizeTag(name);
    if (tag && !tags.includes(tag)) tags.push(tag);
  }
  return tags;
}

/**
 * OCI annotations as image labels. `created` is the commit's time, so one commit gives one image.
 * No `ref.name`: the branch or tag is in the image's tags, and a label naming it would give the
 * same commit a new digest for every ref it is pushed to, so a tag pushed on a built commit could
 * not reuse the image (core/result-key.ts).
 */
export function imageLabels(repository: RepositoryInfo, commitTime: number): Record<string, string> {
  const labels: Record<string, string> = {
    'org.opencontainers.image.revision': repository.commit,
    'org.opencontainers.image.created': new Date(commitTime * 1000).toISOString(),
  };
  if (repository.cloneUrl) labels['org.opencontainers.image.source'] = repository.cloneUrl;
  return labels;
}
