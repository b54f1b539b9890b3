// Branch include/exclude globs (`server.branches`, `.oci-build.yaml` branches), with GitHub Actions' `on.push.branches`
// meaning: `*` matches within one path segment, `**` across segments, `?` one character.
// Written here rather than taking a glob library: branch names are not paths (no dotfile or
// brace rules wanted), and the whole grammar is these three wildcards.

export interface BranchFilter {
  include: string[];
  exclude: string[];
}

export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === '*') {
      if (glob[i + 1] === '*') {
        source += '.*';
        i++;
      } else {
        source += '[^/]*';
      }
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

export type BranchDecision = { build: true } | { build: false; reason: string };

/** Compiles the globs once; the result decides per branch name. `key` names the setting in reasons. */
export function compileBranchFilter(filter: BranchFilter, key = 'server.branches'): (branch: string) => BranchDecision {
  const include = filter.include.map((glob) => ({ glob, re: globToRegExp(glob) }));
  const exclude = filter.exclude.map((glob) => ({ glob, re: globToRegExp(glob) }));
  return (branch) => {
    const excludedBy = exclude.find((g) => g.re.test(branch));
    if (excludedBy) return { build: false, reason: `branch ${branch} matches ${key}.exclude ${JSON.stringify(excludedBy.glob)}` };
    if (include.length > 0 && !include.some((g) => g.re.test(branch))) {
      return { build: false, reason: `branch ${branch} matches none of ${key}.include` };
    }
    return { build: true };
  };
}
