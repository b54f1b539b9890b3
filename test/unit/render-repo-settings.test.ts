// How the CLI shows a skipped build and what a repository's .oci-build.yaml changed.

import { describe, expect, it } from 'vitest';
import { renderBuildDetails, renderStatusTable } from '../../src/cli/render/status-table.js';
import { renderSummary } from '../../src/cli/render/summary.js';
import type { BuildRecord } from '../../src/core/types.js';

const record: BuildRecord = {
  id: 'gh-1',
  status: 'skipped',
  trigger: 'webhook',
  repository: { fullName: 'acme/payments', branch: 'feature/x', commit: 'a'.repeat(40) },
  createdAt: '2026-12-02T00:00:00.000Z',
  startedAt: '2026-12-02T00:00:01.000Z',
  finishedAt: '2026-12-02T00:00:02.000Z',
  phases: [],
  images: [],
  skipReason: 'branch feature/x matches none of branches.include in .oci-build.yaml',
  settings: {
    file: '.oci-build.yaml',
    blob: 'b'.repeat(40),
    projects: { api: { command: ['make', 'build'], image: 'payments-api', env: { A: '1' }, enabled: false } },
    tags: ['main-aaaaaaa'],
    branches: { include: ['main'], exclude: [] },
  },
};

describe('rendering skipped builds and their settings', () => {
  it('status ID shows the reason and the settings', () => {
    const text = renderBuildDetails(record, { color: false, now: new Date('2026-12-02T00:01:00.000Z') });
    expect(text).toMatch(/^Status +skipped$/m);
    expect(text).toMatch(/^Skipped +branch feature\/x matches none of branches\.include in \.oci-build\.yaml$/m);
    expect(text).toContain(`Settings (.oci-build.yaml, blob ${'b'.repeat(12)})`);
    expect(text).toContain('  api: disabled · command make build · image payments-api · env A=1');
    expect(text).toContain('  extra tags: main-aaaaaaa');
    expect(text).toContain('  branches (webhooks): include main · exclude -');
  });

  it('the summary and the list say skipped', () => {
    expect(renderSummary(record, { color: false }).split('\n').slice(0, 3)).toEqual([
      '- Build gh-1 skipped in 1.0s',
      '  acme/payments · feature/x · aaaaaaa',
      '  skipped: branch feature/x matches none of branches.include in .oci-build.yaml',
    ]);
    expect(renderStatusTable([record], { color: false, now: new Date('2026-12-02T00:01:00.000Z') })).toMatch(/gh-1 +acme\/payments +feature\/x +aaaaaaa +skipped/);
  });
});
