// isomorphic-git, loaded with require. Under Node its entry point is CommonJS (index.cjs, ~19k
// lines): an ESM `import` of it first runs cjs-module-lexer over the whole file to find its named
// exports, which cost about 60 ms of every build's source phase. require() skips that scan; the
// module instance is the same one an `import` would get.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const git = (require('isomorphic-git') as { default: typeof import('isomorphic-git').default }).default;

export default git;
