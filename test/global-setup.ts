// Compiles src/ to dist/ once before the tests: the end-to-end tests run bin/oci-build.js, as users do.
// Type errors do not stop the emit (the typecheck step of `npm test` reports them); a test run of
// one file while another file is half-written still gets a usable dist/.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'ignore' });
}
