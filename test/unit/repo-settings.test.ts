// `.oci-build.yaml`: the schema and its error style, the operator's keys refused by name, the
// merge into a detected workspace, and the tag templates.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { configLeaves } from '../../src/config/config-layers.js';
import { schemaSha256 } from '../../src/config/config-validator.js';
import { gitBlobId, parseRepoSettings, REPO_SETTINGS_SCHEMA, reservedVariable, settingsFrom } from '../../src/config/repo-settings.js';
import { SCHEMA_SHA256 } from '../../src/config/repo-settings-validator.generated.js';
import { CacheService } from '../../src/cache/cache-service.js';
import { RepoSettingsError } from '../../src/core/errors.js';
import { imageRepository, TAG_PATTERN } from '../../src/core/naming.js';
import {
  applyProjectSettings,
  branchSkipReason,
  projectContextDir,
  renderExtraTags,
  TAG_PLACEHOLDERS,
} from '../../src/core/repo-settings-apply.js';
import type { RepoSettings, Workspace } from '../../src/core/types.js';

const FILE = '.oci-build.yaml';

function parse(text: string): Promise<RepoSettings> {
  return parseRepoSettings(Buffer.from(text));
}

async function problems(text: string): Promise<string[]> {
  try {
    await parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(RepoSettingsError);
    expect((err as RepoSettingsError).exitCode).toBe(2);
    return (err as RepoSettingsError).message.split('\n').slice(1).map((l) => l.replace(/^ {2}- /, ''));
  }
  throw new Error('the file was accepted');
}

function settingsOf(data: unknown): RepoSettings {
  return settingsFrom(data, FILE, '0'.repeat(40));
}

const single: Workspace = {
  kind: 'single',
  dir: '/w/repo',
  name: 'repo',
  projects: [{ name: 'repo', root: '.', language: 'go', dockerfile: '/w/repo/Dockerfile', dockerfileCandidates: ['/w/repo/Dockerfile'] }],
  selected: ['repo'],
};

describe('.oci-build.yaml parsing', () => {
  it('reads the issue\'s example', async () => {
    const text = `projects:
  api:
    command: [make, build]
    dockerfile: build/Containerfile
    context: .
    image: payments-api
    env: { GOFLAGS: -tags=prod }
    buildArgs: { VERSION: 1 }
    enabled: true
image:
  tags: [latest, "{branch}-{shortSha}", { tag: stable, defaultBranch: true }, { tag: "rc-{date}", branches: ["release/*"] }]
branches: { include: [main, "release/*"], exclude: [] }
`;
    const settings = await parse(text);
    expect(settings).toEqual({
      file: FILE,
      blob: gitBlobId(Buffer.from(text)),
      projects: {
        api: {
          command: ['make', 'build'],
          dockerfile: 'build/Containerfile',
          context: '.',
          image: 'payments-api',
          env: { GOFLAGS: '-tags=prod' },
          buildArgs: { VERSION: '1' },
          enabled: true,
        },
      },
      tags: [{ tag: 'latest' }, { tag: '{branch}-{shortSha}' }, { tag: 'stable', defaultBranch: true }, { tag: 'rc-{date}', branches: ['release/*'] }],
      branches: { include: ['main', 'release/*'], exclude: [] },
    });
    // git hash-object's id of an empty file
    expect(gitBlobId(Buffer.alloc(0))).toBe('e69de29bb2d1d6434b8b29ae775ad8c2e48c5391');
  });

  it('lists every problem at once, each with its path', async () => {
    const listed = await problems(`projects:
  api:
    command: make build
    dockerfile: ../outside/Dockerfile
    context: /etc
    image: Payments API
    env: { 1BAD: x, PATH: /tmp/evil }
    colour: blue
image:
  tags: ["{branch", { tag: ok, when: main }, 3]
branches: { include: main }
extra: 1
`);
    expect(listed).toEqual(
      expect.arrayContaining([
        `${FILE}: projects.api.command: must be array`,
        `${FILE}: projects.api.dockerfile: must be a relative path inside the project (no leading /, no .. segment, no backslash)`,
        `${FILE}: projects.api.context: must be a relative path inside the project (no leading /, no .. segment, no backslash)`,
        expect.stringMatching(new RegExp(`^${FILE}: projects\\.api\\.image: must be an image repository name`)),
        `${FILE}: projects.api.env.1BAD: is not a valid variable name (letters, digits and _, not starting with a digit)`,
        expect.stringMatching(new RegExp(`^${FILE}: projects\\.api\\.env\\.PATH: is set by oci-build`)),
        `${FILE}: projects.api.colour: unknown key`,
        expect.stringMatching(new RegExp(`^${FILE}: image\\.tags\\.0: must be a tag template`)),
        `${FILE}: image.tags.1.when: unknown key`,
        `${FILE}: image.tags.2: must be a tag template (a string) or { tag, branches, defaultBranch }`,
        `${FILE}: branches.include: must be array`,
        `${FILE}: extra: unknown key`,
      ]),
    );
    expect(listed).toHaveLength(12);
  });

  it('reports invalid YAML with its line, and refuses a file that is not a mapping', async () => {
    expect((await problems('projects:\n  api: [\n'))[0]).toMatch(/^\.oci-build\.yaml: line \d+: is not valid YAML/);
    expect(await problems('- a\n- b\n')).toEqual([`${FILE}: (root): must be a mapping of keys (projects, image, branches)`]);
    expect(await parse('')).toMatchObject({ projects: {}, tags: [] });
  });

  it('refuses every operator key by name, saying where the operator sets it', async () => {
    const listed = await problems(`workDir: /tmp/x
nats: { url: "nats://evil:4222" }
server: { webhookSecret: s }
git: { token: t }
worker: { concurrency: 9 }
build: { sandbox: none, timeout: 9h }
image: { registry: evil.example/x, push: true, authFile: /root/auth.json, tlsVerify: false, tags: [ok] }
`);
    const named = listed.map((l) => l.split(': ')[1]);
    expect(named.sort()).toEqual(
      ['workDir', 'nats.url', 'server.webhookSecret', 'git.token', 'worker.concurrency', 'build.sandbox', 'build.timeout', 'image.registry', 'image.push', 'image.authFile', 'image.tlsVerify'].sort(),
    );
    expect(listed).toContain(
      `${FILE}: image.registry: is the operator's key, not the repository's: the operator sets it in oci-build.config.yaml or OCI_BUILD_IMAGE_REGISTRY for serve and the workers, and a repository's file never changes it`,
    );
    expect(listed.find((l) => l.includes('build.timeout'))).toMatch(/OCI_BUILD_BUILD_TIMEOUT .*cannot raise it/);
    expect(await problems('build: { projects: { api: { command: [x] } } }\n')).toEqual([
      expect.stringMatching(/build\.projects: is the operator's key.*projects\.<name>\.command/),
    ]);
  });

  it('never applies an operator key, whatever else the file holds (property)', () => {
    const leaves = configLeaves().map((l) => l.path);
    fc.assert(
      fc.property(
        fc.subarray(leaves, { minLength: 1 }),
        fc.array(fc.jsonValue(), { minLength: 1, maxLength: 11 }),
        fc.boolean(),
        (paths, values, withTags) => {
          const data: Record<string, any> = withTags ? { image: { tags: ['x'] } } : {};
          paths.forEach((path, i) => {
            const keys = path.split('.');
            let node = data;
            for (const key of keys.slice(0, -1)) node = node[key] ??= {};
            node[keys.at(-1)!] = values[i % values.length];
          });
          try {
            settingsOf(data);
          } catch (err) {
            expect(err).toBeInstanceOf(RepoSettingsError);
            const named = (err as RepoSettingsError).issues.filter((i) => i.message.startsWith("is the operator's key")).map((i) => i.path);
            for (const path of paths) expect(named.some((n) => path === n || path.startsWith(`${n}.`))).toBe(true);
            return;
          }
          throw new Error(`accepted ${JSON.stringify(data)}`);
        },
      ),
    );
  });

  it('reserves the sandbox\'s variables and every cache location oci-build sets', () => {
    for (const name of ['PATH', 'HOME', 'CI', 'LANG', 'LC_ALL', 'TZ', 'HTTPS_PROXY', 'NODE_EXTRA_CA_CERTS', 'OCI_BUILD_GIT_TOKEN']) expect(reservedVariable(name)).toBe(true);
    for (const name of ['GOFLAGS', 'VERSION', 'NODE_ENV', 'CGO_ENABLED']) expect(reservedVariable(name)).toBe(false);
    const cache = new CacheService('/cache-root');
    for (const [name, value] of Object.entries(cache.toolEnv())) {
      if (value.includes('/cache-root')) expect(reservedVariable(name), name).toBe(true);
    }
  });

  it('the commented example in docs/ is a valid file', async () => {
    const text = readFileSync(join(import.meta.dirname, '../../docs/oci-build.repo.example.yaml'));
    const settings = await parseRepoSettings(text);
    expect(settings.projects['.']).toMatchObject({ command: ['make', 'build'], image: 'payments-api', buildArgs: { VERSION: '1' } });
    expect(settings.tags).toHaveLength(3);
  });

  it('the precompiled validator was generated from the schema shipped now (regenerate it after editing the schema)', () => {
    expect(SCHEMA_SHA256).toBe(schemaSha256(REPO_SETTINGS_SCHEMA));
  });
});

describe('tag templates', () => {
  const base = { commit: 'abcdef0123456789abcdef0123456789abcdef01', commitTime: 1_767_225_600 };

  it('renders each placeholder, and leaves out with a warning what the build does not have', () => {
    const { tags, warnings } = renderExtraTags(
      [{ tag: 'latest' }, { tag: '{branch}-{shortSha}' }, { tag: 'v{tag}' }, { tag: '{sha}' }, { tag: 'd{date}' }, { tag: 'latest' }],
      { ...base, branch: 'feature/x' },
    );
    expect(tags).toEqual(['latest', 'feature-x-abcdef0', base.commit, 'd20260101']);
    expect(warnings).toEqual([`${FILE}: image.tags "v{tag}" not added: this build has no tag ({tag} is known only when a tag is built)`]);
    expect(renderExtraTags([{ tag: '{branch}' }], { ...base, tag: 'v1' }).warnings[0]).toMatch(/has no branch/);
  });

  it('adds a limited entry only on its branches or on the default branch', () => {
    const entries = [{ tag: 'latest', defaultBranch: true }, { tag: 'rc', branches: ['release/*'] }];
    expect(renderExtraTags(entries, { ...base, branch: 'main', defaultBranch: 'main' }).tags).toEqual(['latest']);
    expect(renderExtraTags(entries, { ...base, branch: 'release/1', defaultBranch: 'main' }).tags).toEqual(['rc']);
    expect(renderExtraTags(entries, { ...base, branch: 'release/1/x', defaultBranch: 'main' }).tags).toEqual([]);
    expect(renderExtraTags(entries, { ...base, tag: 'v1' })).toEqual({ tags: [], warnings: [] });
    const unknown = renderExtraTags(entries, { ...base, branch: 'main' });
    expect(unknown.tags).toEqual([]);
    expect(unknown.warnings[0]).toMatch(/"latest" not added: the repository's default branch is not known/);
  });

  it('adds no tag that would move back once the branch moved on, except those naming the commit', () => {
    const { tags, warnings } = renderExtraTags([{ tag: 'latest' }, { tag: 'b-{shortSha}' }], { ...base, branch: 'main', branchMovedOn: true });
    expect(tags).toEqual(['b-abcdef0']);
    expect(warnings).toHaveLength(1);
  });

  it('every rendered tag is a valid OCI tag, whatever the template and the ref (property)', () => {
    const piece = fc.oneof(
      fc.constantFrom(...TAG_PLACEHOLDERS.map((p) => `{${p}}`)),
      fc.stringMatching(/^[A-Za-z0-9_.-]{1,8}$/),
    );
    const template = fc.tuple(fc.oneof(fc.constantFrom(...TAG_PLACEHOLDERS.map((p) => `{${p}}`)), fc.stringMatching(/^[A-Za-z0-9_]$/)), fc.array(piece, { maxLength: 6 })).map(([a, rest]) => a + rest.join(''));
    const ref = fc.option(fc.string({ minLength: 1, maxLength: 300, unit: 'grapheme' }), { nil: undefined });
    fc.assert(
      fc.property(fc.array(template, { minLength: 1, maxLength: 5 }), ref, ref, fc.stringMatching(/^[0-9a-f]{40}$/), fc.integer({ min: 0, max: 4_000_000_000 }), (templates, branch, tag, commit, commitTime) => {
        const { tags, warnings } = renderExtraTags(templates.map((t) => ({ tag: t })), { commit, commitTime, ...(branch ? { branch } : {}), ...(tag ? { tag } : {}) });
        for (const t of tags) expect(t).toMatch(TAG_PATTERN);
        expect(new Set(tags).size).toBe(tags.length);
        expect(tags.length + warnings.length).toBeGreaterThanOrEqual(new Set(templates).size > 0 ? 1 : 0);
      }),
    );
  });
});

describe('applying projects', () => {
  it('sets the command, Dockerfile, context, image name, env and build args of the project it names', () => {
    const settings = settingsOf({
      projects: { '.': { command: ['make', 'build'], dockerfile: 'build/Containerfile', context: 'build', image: 'team/payments-api', env: { GOFLAGS: '-tags=prod' }, buildArgs: { V: '1' } } },
    });
    const applied = applyProjectSettings(single, settings);
    const project = applied.workspace.projects[0]!;
    expect(project).toMatchObject({ buildCommand: ['make', 'build'], dockerfile: '/w/repo/build/Containerfile', context: 'build', image: 'team/payments-api', env: { GOFLAGS: '-tags=prod' }, buildArgs: { V: '1' } });
    expect(applied.projects).toEqual({ repo: settings.projects['.'] });
    expect(applied.checks).toEqual([
      { key: 'projects["."].dockerfile', path: '/w/repo/build/Containerfile', kind: 'dockerfile' },
      { key: 'projects["."].context', path: '/w/repo/build', kind: 'directory' },
    ]);
    expect(imageRepository({ registry: 'reg:5000/ci/', name: 'repo', image: project.image! })).toBe('reg:5000/ci/team/payments-api');
    expect(imageRepository({ name: 'mono', project: 'api', image: project.image! })).toBe('team/payments-api');
    expect(projectContextDir(applied.workspace, project)).toBe('/w/repo/build');
    // the detected workspace is left as it was
    expect(single.projects[0]).not.toHaveProperty('buildCommand');
    expect(single.projects[0]!.image).toBeUndefined();
  });

  it('keeps the operator\'s command, skips what Nx cannot apply, warns of unknown projects, and disables', () => {
    const withOperator: Workspace = { ...single, projects: [{ ...single.projects[0]!, buildCommand: ['op'] }] };
    const a = applyProjectSettings(withOperator, settingsOf({ projects: { repo: { command: ['mine'] }, ghost: { enabled: false } } }));
    expect(a.workspace.projects[0]!.buildCommand).toEqual(['op']);
    expect(a.warnings).toEqual([
      `${FILE}: projects.repo.command not applied: the operator's build.projects command of repo wins`,
      `${FILE}: projects.ghost names no project of this build (repo)`,
    ]);
    const nx: Workspace = { ...single, kind: 'nx', projects: [{ name: 'api', root: 'apps/api', dockerfileCandidates: [] }], selected: ['api'] };
    const b = applyProjectSettings(nx, settingsOf({ projects: { 'apps/api': { command: ['x'], env: { A: '1' }, context: '..x', enabled: false } } }));
    expect(b.workspace.projects[0]).toMatchObject({ context: 'apps/api/..x' });
    expect(b.workspace.projects[0]!.buildCommand).toBeUndefined();
    expect(b.warnings).toHaveLength(2);
    expect(b.workspace.selected).toEqual([]);
    expect(b.disabled).toEqual(['api']);
  });
});

describe('branches', () => {
  const settings = settingsOf({ branches: { include: ['main', 'release/*'], exclude: ['release/old'] } });
  it('filter webhook builds of branches only', () => {
    expect(branchSkipReason(settings, { trigger: 'webhook' }, 'main')).toBeUndefined();
    expect(branchSkipReason(settings, { trigger: 'webhook' }, 'release/2')).toBeUndefined();
    expect(branchSkipReason(settings, { trigger: 'webhook' }, 'feature/x')).toBe(`branch feature/x matches none of branches.include in ${FILE}`);
    expect(branchSkipReason(settings, { trigger: 'webhook' }, 'release/old')).toBe(`branch release/old matches branches.exclude "release/old" in ${FILE}`);
    expect(branchSkipReason(settings, { trigger: 'cli' }, 'feature/x')).toBeUndefined();
    expect(branchSkipReason(settings, { trigger: 'webhook' }, undefined)).toBeUndefined();
  });
});
