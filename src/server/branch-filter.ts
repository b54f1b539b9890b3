// The branch globs of `server.branches` live in core (src/core/branch-filter.ts): a repository's
// `.oci-build.yaml` filters its webhook builds by the same rule.

export { compileBranchFilter, globToRegExp, type BranchDecision, type BranchFilter } from '../core/branch-filter.js';
