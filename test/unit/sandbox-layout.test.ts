// The pure parts of exec/sandbox.ts: the order of bubblewrap's mounts and the allow-list of the
// build environment, stated as properties. The real sandbox is test/integration/build-sandbox.test.ts.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bubblewrapArgs, buildCommandEnv, passedVariable, type SandboxLayout } from '../../src/exec/sandbox.js';

type Mount = { kind: 'tmpfs' | 'bind' | 'ro-bind' | 'null'; path: string };

/** The mounts of a bwrap command line, in order, after the fixed base ones. */
function mountsOf(args: string[]): Mount[] {
  const mounts: Mount[] = [];
  for (let i = 0; i < args.length && args[i] !== '--'; i++) {
    const flag = args[i];
    if (flag === '--tmpfs') mounts.push({ kind: 'tmpfs', path: args[++i]! });
    else if (flag === '--bind') mounts.push({ kind: 'bind', path: args[(i += 2)]! });
    else if (flag === '--ro-bind') {
      const source = args[++i]!;
      const dest = args[++i]!;
      mounts.push({ kind: source === '/dev/null' ? 'null' : 'ro-bind', path: dest });
    } else if (flag === '--dev' || flag === '--proc' || flag === '--chdir' || flag === '--cap-drop') i++;
  }
  return mounts;
}

const under = (path: string, dir: string) => dir === '/' || path === dir || path.startsWith(`${dir}/`);

/** What the command finally sees at `path`: the last mount at or above it wins. */
function effective(mounts: Mount[], path: string): Mount['kind'] | undefined {
  let winner: Mount | undefined;
  for (const mount of mounts) if (under(path, mount.path)) winner = mount;
  return winner?.kind;
}

const segment = fc.constantFrom('a', 'b', 'c', 'work', 'home', 'cache', 'tree');
const absPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`);

describe('bubblewrapArgs', () => {
  it('starts read-only with a private /tmp and ends with the namespaces, the directory and the command', () => {
    const args = bubblewrapArgs({ tree: '/w/tree', cwd: '/w/tree/app', writable: [], readable: [], hiddenDirs: [], hiddenFiles: [] }, 'go', ['build', './...']);
    expect(args.slice(0, 9)).toEqual(['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp']);
    expect(args.slice(-11)).toEqual(['--unshare-pid', '--unshare-ipc', '--die-with-parent', '--cap-drop', 'ALL', '--chdir', '/w/tree/app', '--', 'go', 'build', './...']);
    // runCommand ends the build's process group: bwrap must stay in it.
    expect(args).not.toContain('--new-session');
  });

  it('whatever the paths, the tree and writable dirs are writable, hidden dirs empty and hidden files covered, where not shown again below', () => {
    fc.assert(
      fc.property(absPath, fc.array(absPath, { maxLength: 3 }), fc.array(absPath, { maxLength: 3 }), fc.array(absPath, { maxLength: 2 }), (tree, writable, hiddenDirs, hiddenFiles) => {
        const layout: SandboxLayout = { tree, cwd: tree, writable, readable: [], hiddenDirs, hiddenFiles };
        const mounts = mountsOf(bubblewrapArgs(layout, 'true', []));
        // Each writable path is writable (unless a hidden file is that very path), and so is what is
        // below it, unless something hidden lies deeper.
        for (const dir of [tree, ...writable]) {
          if (hiddenFiles.some((f) => f === dir)) continue;
          const deeperHidden = [...hiddenDirs, ...hiddenFiles].some((h) => h !== dir && under(h, dir));
          expect(effective(mounts, dir), `${dir} in ${JSON.stringify(layout)}`).toBe('bind');
          if (!deeperHidden) expect(effective(mounts, `${dir}/x`)).toBe('bind');
        }
        // A hidden dir shows nothing of the host unless something is bound back at or below it.
        for (const dir of hiddenDirs) {
          const shown = [tree, ...writable].some((w) => under(dir, w) || under(w, dir));
          if (!shown && !hiddenFiles.some((f) => under(dir, f))) expect(effective(mounts, `${dir}/secret`)).toBe('tmpfs');
        }
        // A hidden file is covered wherever it lies, inside the tree too.
        for (const file of hiddenFiles) expect(effective(mounts, file)).toBe('null');
      }),
      { numRuns: 500 },
    );
  });

  it('binds the tree back into a hidden HOME and work directory, caches into the work directory', () => {
    const args = bubblewrapArgs(
      {
        tree: '/root/.oci-build/worktrees/b1',
        cwd: '/root/.oci-build/worktrees/b1',
        writable: ['/root/.oci-build/cache/go-build'],
        readable: ['/root/.oci-build/cache/.tool-home/maven'],
        hiddenDirs: ['/root/.oci-build', '/root'],
        hiddenFiles: ['/root/.oci-build/worktrees/b1/oci-build.config.yaml'],
      },
      'true',
      [],
    );
    expect(mountsOf(args)).toEqual([
      { kind: 'ro-bind', path: '/' },
      { kind: 'tmpfs', path: '/tmp' },
      { kind: 'tmpfs', path: '/root' },
      { kind: 'tmpfs', path: '/root/.oci-build' },
      { kind: 'bind', path: '/root/.oci-build/cache/go-build' },
      { kind: 'bind', path: '/root/.oci-build/worktrees/b1' },
      { kind: 'ro-bind', path: '/root/.oci-build/cache/.tool-home/maven' },
      { kind: 'null', path: '/root/.oci-build/worktrees/b1/oci-build.config.yaml' },
    ]);
  });
});

describe('buildCommandEnv', () => {
  const names = fc.oneof(
    fc.constantFrom('PATH', 'LANG', 'TZ', 'LC_ALL', 'LC_CTYPE', 'https_proxy', 'NO_PROXY', 'OCI_BUILD_GIT_TOKEN', 'OCI_BUILD_NATS_PASSWORD', 'NATS_TOKEN', 'GITHUB_TOKEN', 'HOME', 'CI', 'AWS_SECRET_ACCESS_KEY', 'SSH_AUTH_SOCK'),
    fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/),
  );
  const envOf = fc.dictionary(names, fc.string({ maxLength: 8 }), { maxKeys: 12 });

  it('passes from the parent only the allow-list; CI=true and HOME are set; the caller and build.env win, in that order', () => {
    fc.assert(
      fc.property(envOf, envOf, envOf, (parent, stepEnv, buildEnv) => {
        const env = buildCommandEnv(parent, { home: '/tmp', env: stepEnv, buildEnv });
        for (const [name, value] of Object.entries(env)) {
          if (Object.hasOwn(buildEnv, name)) expect(value).toBe(buildEnv[name]);
          else if (Object.hasOwn(stepEnv, name)) expect(value).toBe(stepEnv[name]);
          else if (name === 'CI') expect(value).toBe('true');
          else if (name === 'HOME') expect(value).toBe('/tmp');
          else {
            expect(passedVariable(name), name).toBe(true);
            expect(value).toBe(parent[name]);
          }
        }
        for (const name of Object.keys(parent)) {
          if (name.startsWith('OCI_BUILD_') && !Object.hasOwn(stepEnv, name) && !Object.hasOwn(buildEnv, name)) expect(env[name]).toBeUndefined();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('lets the caller remove a variable with undefined', () => {
    expect(buildCommandEnv({ PATH: '/bin', TZ: 'UTC' }, { home: '/tmp', env: { TZ: undefined } })).toEqual({ PATH: '/bin', CI: 'true', HOME: '/tmp' });
  });

  it('never passes the names of the worker secrets', () => {
    for (const name of ['OCI_BUILD_GIT_TOKEN', 'OCI_BUILD_SERVER_WEBHOOK_SECRET', 'OCI_BUILD_SERVER_API_TOKENS', 'OCI_BUILD_NATS_PASSWORD', 'NATS_TOKEN', 'GITHUB_TOKEN', 'HOME', 'USER', 'SSH_AUTH_SOCK']) {
      expect(passedVariable(name), name).toBe(false);
    }
  });
});
