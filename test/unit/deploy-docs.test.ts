// The guides (docs/deployment.md, docs/development.md) name real things: every repository path
// they mention exists, every OCI_BUILD_* variable is a configuration key's, every alert is in the
// rules, every exported helper they name is exported.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEFAULTS, configLeaves } from '../../src/config/config.js';
import { ociBuildNames, readDeployFile } from '../helpers/deploy-files.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const GUIDES = ['docs/deployment.md', 'docs/development.md'];
/** Files the guide tells the user to create, beside the examples shipped. */
const CREATED_BY_THE_USER = new Set(['deploy/oci-build.env', 'deploy/registry-auth.json']);
const text = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');

/** Repository paths a guide names: in backticks or as a relative link. Placeholders (`<x>`, `NAME`) left out. */
function pathsIn(markdown: string): string[] {
  const candidates = [
    ...[...markdown.matchAll(/`((?:src|test|deploy|fixtures|bench|scripts|schema|bin|docs)\/[^`\s]*)`/g)].map((m) => m[1]!),
    ...[...markdown.matchAll(/\]\(\.\.\/([^)#]+)\)/g)].map((m) => m[1]!),
  ];
  return [...new Set(candidates.map((p) => p.replace(/\/$/, '')).filter((p) => !/[<>*]|NAME/.test(p)))];
}

describe('the guides', () => {
  for (const guide of GUIDES) {
    it(`${guide}: every repository path it names exists`, () => {
      const paths = pathsIn(text(guide));
      expect(paths.length).toBeGreaterThan(5);
      for (const path of paths.filter((p) => !CREATED_BY_THE_USER.has(p))) expect(existsSync(join(REPO_ROOT, path)), `${guide} names ${path}`).toBe(true);
    });

    it(`${guide}: every OCI_BUILD_* variable is a configuration key's`, () => {
      const known = new Set([...configLeaves().map((leaf) => leaf.env), DEFAULTS.nats.stream, DEFAULTS.nats.logStream]);
      for (const name of ociBuildNames(text(guide))) expect(known.has(name), `${guide} names ${name}`).toBe(true);
    });
  }

  it('the deployment guide lists exactly the alerts of deploy/prometheus/alerts.yml', () => {
    const rules = (parse(readDeployFile('prometheus/alerts.yml')) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap((g) => g.rules.map((r) => r.alert));
    const listed = [...text('docs/deployment.md').matchAll(/^\| `(OciBuild\w+)` \|/gm)].map((m) => m[1]);
    expect(listed.sort()).toEqual(rules.sort());
  });

  it('the development guide names helpers their files export', () => {
    const guide = text('docs/development.md');
    const rows = [...guide.matchAll(/^\| `([\w-]+)\.ts`[^|]*\| (.*) \|$/gm)];
    expect(rows.length).toBeGreaterThan(5);
    for (const [, file, description] of rows) {
      const source = text(`test/helpers/${file}.ts`) + (existsSync(join(REPO_ROOT, `test/helpers/${file}.mjs`)) ? text(`test/helpers/${file}.mjs`) : '');
      for (const [, name] of description!.matchAll(/`(\w+)\(/g)) expect(source, `${name} in test/helpers/${file}`).toMatch(new RegExp(`export (async )?function ${name}\\b|export const ${name}\\b|${name}[(:]`));
    }
  });
});
