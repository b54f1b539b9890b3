// Fakes behind the core ports, for unit tests of the pipeline and the daemons.

import type {
  BuildListFilter,
  BuildLog,
  BuildStore,
  CodeBuilder,
  ImageBuilder,
  LogStore,
  ProjectDetector,
  Reporter,
  SourceCheckout,
  SourceProvider,
} from '../../src/core/ports.js';
import type { BuildRecord, PhaseMetric, ProjectBuildOutcome, Workspace } from '../../src/core/types.js';
import { checkedListLimit, matchesBuildFilter, newestFirst } from '../../src/core/build-list.js';

export class MemoryBuildStore implements BuildStore {
  readonly records = new Map<string, BuildRecord>();
  readonly history: BuildRecord[] = [];
  async put(record: BuildRecord) {
    const copy = structuredClone(record);
    this.records.set(record.id, copy);
    this.history.push(copy);
  }
  async get(id: string) {
    const record = this.records.get(id);
    return record && structuredClone(record);
  }
  async list(filter: BuildListFilter = {}) {
    const limit = checkedListLimit(filter);
    return [...this.records.values()]
      .filter((r) => matchesBuildFilter(r, filter))
      .sort(newestFirst)
      .slice(0, limit)
      .map((r) => structuredClone(r));
  }
}

export class MemoryLogStore implements LogStore {
  readonly lines = new Map<string, string[]>();
  async open(id: string): Promise<BuildLog> {
    const lines: string[] = [];
    this.lines.set(id, lines);
    return { location: `memory:${id}`, write: (line) => lines.push(line), close: async () => {} };
  }
}

export class RecordingReporter implements Reporter {
  readonly events: string[] = [];
  readonly warnings: string[] = [];
  readonly ended: PhaseMetric[] = [];
  phaseStarted(phase: string, project?: string) {
    this.events.push(`start ${phase}${project ? ` ${project}` : ''}`);
  }
  phaseEnded(metric: PhaseMetric) {
    this.ended.push(metric);
    this.events.push(`end ${metric.name}${metric.project ? ` ${metric.project}` : ''} ${metric.status}`);
  }
  warn(message: string) {
    this.warnings.push(message);
  }
}

export const COMMIT = '0123456789abcdef0123456789abcdef01234567';

export function fakeSource(overrides: Partial<SourceCheckout> = {}): SourceProvider & { disposed: number } {
  const provider = {
    disposed: 0,
    async checkout(): Promise<SourceCheckout> {
      return {
        dir: '/src/app',
        repository: { fullName: 'app', commit: COMMIT, branch: 'main' },
        commitTime: 1767225600,
        warnings: [],
        changedFilesSince: async () => undefined,
        dispose: async () => {
          provider.disposed++;
        },
        ...overrides,
      };
    },
  };
  return provider;
}

export function fakeDetector(workspace: Partial<Workspace> = {}): ProjectDetector {
  return {
    async detect(dir, options): Promise<Workspace> {
      return {
        kind: 'single',
        dir,
        name: options.name,
        projects: [{ name: options.name, root: '.', language: 'go', dockerfile: `${dir}/Dockerfile`, dockerfileCandidates: [`${dir}/Dockerfile`, `${dir}/Containerfile`] }],
        selected: [options.name],
        ...workspace,
      };
    },
  };
}

export function fakeBuilder(result: (workspace: Workspace) => ProjectBuildOutcome[] | Promise<ProjectBuildOutcome[]> = (ws) =>
  ws.selected.map((project) => ({ project, status: 'succeeded', startedAt: new Date().toISOString(), durationMs: 1 }))): CodeBuilder {
  return { build: async (workspace) => result(workspace) };
}

export class FakeImageBuilder implements ImageBuilder {
  readonly built: Parameters<ImageBuilder['build']>[0][] = [];
  readonly pushed: Parameters<ImageBuilder['push']>[0][] = [];
  async build(spec: Parameters<ImageBuilder['build']>[0]) {
    this.built.push(spec);
    return { imageId: `id-${spec.project}`, digest: 'sha256:local' };
  }
  async push(spec: Parameters<ImageBuilder['push']>[0]) {
    this.pushed.push(spec);
    return { digest: `sha256:${'f'.repeat(64)}` };
  }
}
