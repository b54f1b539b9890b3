// Compiles src/ to dist/ (and bundles it into dist/bundle) once before the tests: the end-to-end tests run bin/oci-build.js, as users do.
// Type errors do not stop the emit (the typecheck step of `npm test` reports them); a test run of
// one file while another file is half-written still gets a usable dist/.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'ignore' });
  // bin/oci-build.js runs the bundle, as an installed oci-build does.
  const bundle = spawnSync(process.execPath, [join(root, 'scripts/bundle.mjs')], { cwd: root, encoding: 'utf8' });
  if (bundle.status !== 0) throw new Error(`scripts/bundle.mjs failed:\n${bundle.stderr}${bundle.stdout}`);
}
