// The toolchain versions that go into a result key (core/result-key.ts): what `go version`,
// `mvn -v`, `dotnet --version` and `node -v` print, asked once per process run and per tool.

import type { Language } from '../core/types.js';
import type { CommandRunner } from '../exec/run-command.js';

const VERSION_COMMANDS: Readonly<Record<string, readonly string[]>> = {
  go: ['version'],
  mvn: ['-v', '-B'],
  dotnet: ['--version'],
  node: ['-v'],
  npm: ['-v'],
};

/** The tools whose versions decide a project's build output. */
export function toolsOf(language: Language | undefined, nx: boolean): string[] {
  const tools = new Set<string>();
  if (language === 'go') tools.add('go');
  if (language === 'java') tools.add('mvn');
  if (language === 'dotnet') tools.add('dotnet');
  if (language === 'node' || nx) {
    tools.add('node');
    tools.add('npm');
  }
  return [...tools].sort();
}

export class ToolchainVersions {
  private readonly versions = new Map<string, Promise<string>>();

  constructor(private readonly run: CommandRunner) {}

  /** The version text of each tool; throws when one cannot be asked (the build would fail too). */
  async of(tools: readonly string[]): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    for (const tool of tools) {
      let version = this.versions.get(tool);
      if (!version) {
        version = this.run(tool, VERSION_COMMANDS[tool] ?? ['--version'], { displayName: `${tool} version` }).then((r) =>
          // Maven's lines hold Java's version too; its colour codes and the kernel's version ("OS
          // name") are left out, so workers on two kernels share results.
          r.stdout
            .replace(/\u001b\[[0-9;]*m/g, '')
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => l.length > 0 && !l.startsWith('OS name:'))
            .join('\n'),
        );
        // A failure is not remembered: the next build asks again.
        version.catch(() => this.versions.delete(tool));
        this.versions.set(tool, version);
      }
      result[tool] = await version;
    }
    return result;
  }
}
