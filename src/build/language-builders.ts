// The default build of each language (DESIGN.md, "Build outputs"): which commands run, with which
// caches. The commands are data; code-builder.ts runs them.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheKind, CacheService } from '../cache/cache-service.js';
import type { Language } from '../core/types.js';

/** One command of a build, run in the project's directory. */
export interface BuildStep {
  file: string;
  args: string[];
  /** Added to the cache environment. */
  env?: Record<string, string>;
}

export interface LanguageBuilder {
  language: Language;
  /** The tool that must be installed (for messages and `doctor`). */
  tool: string;
  /** The caches its build uses; prepared before it runs. */
  caches: CacheKind[];
  /** What the Dockerfile copies afterwards (for messages). */
  output: string;
  steps(projectDir: string, cache: CacheService): BuildStep[];
}

export const goBuilder: LanguageBuilder = {
  language: 'go',
  tool: 'go',
  caches: ['go-mod', 'go-build'],
  output: 'dist/<binary>',
  // Static binaries: images are often FROM scratch, with no C library to link against.
  steps: () => [{ file: 'go', args: ['build', '-trimpath', '-o', 'dist/', './...'], env: { CGO_ENABLED: '0' } }],
};

export const mavenBuilder: LanguageBuilder = {
  language: 'java',
  tool: 'mvn',
  caches: ['maven'],
  output: 'target/*.jar',
  steps: (_dir, cache) => [
    {
      file: 'mvn',
      // The local repository and offline mode are also in MAVEN_OPTS (for Maven started by another
      // tool); as arguments they survive a cache path with spaces, which MAVEN_OPTS cannot carry.
      args: ['-B', 'package', '-DskipTests', '-Dstyle.color=never', `-Dmaven.repo.local=${cache.path('maven')}`, ...(cache.mavenOffline ? ['-o'] : [])],
    },
  ],
};

export const dotnetBuilder: LanguageBuilder = {
  language: 'dotnet',
  tool: 'dotnet',
  caches: ['nuget'],
  output: 'dist/',
  steps: (_dir, cache) => [
    {
      file: 'dotnet',
      args: ['publish', '-c', 'Release', '-o', 'dist'],
      // NuGet writes a migrations marker under XDG_DATA_HOME (~/.local/share) whatever
      // DOTNET_CLI_HOME says; keep it out of the user's home too.
      env: { XDG_DATA_HOME: join(cache.dotnetHome(), '.local', 'share') },
    },
  ],
};

export const nodeBuilder: LanguageBuilder = {
  language: 'node',
  tool: 'npm',
  caches: ['npm'],
  output: 'as the package defines',
  steps: (dir) => [
    // `npm ci` needs a lock file; without one the only way to install is `npm install`.
    existsSync(join(dir, 'package-lock.json')) || existsSync(join(dir, 'npm-shrinkwrap.json'))
      ? { file: 'npm', args: ['ci'] }
      : { file: 'npm', args: ['install', '--no-package-lock'] },
    { file: 'npm', args: ['run', 'build', '--if-present'] },
  ],
};

export const LANGUAGE_BUILDERS: Readonly<Record<Language, LanguageBuilder>> = {
  go: goBuilder,
  java: mavenBuilder,
  dotnet: dotnetBuilder,
  node: nodeBuilder,
};
