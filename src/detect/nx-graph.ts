// Reading what Nx reports about a workspace: the project graph (`nx graph --file=…json`) and the
// affected projects (`nx show projects --affected --stdin --json`). Pure parsing, no I/O.

export interface NxProjectNode {
  name: string;
  /** Relative to the workspace root; '.' for a root project. */
  root: string;
  type?: string;
  targets: string[];
}

export interface NxGraph {
  projects: NxProjectNode[];
  /** Project name → the projects it depends on. */
  dependencies: Record<string, string[]>;
}

/** Parses the JSON `nx graph --file=graph.json` writes; throws on anything that is not one. */
export function parseNxGraph(text: string): NxGraph {
  const parsed = JSON.parse(text) as { graph?: { nodes?: Record<string, unknown>; dependencies?: Record<string, unknown> } };
  const nodes = parsed?.graph?.nodes;
  if (!nodes || typeof nodes !== 'object') throw new Error('no graph.nodes in the output of nx graph');
  const projects: NxProjectNode[] = [];
  for (const [key, value] of Object.entries(nodes)) {
    const node = value as { name?: unknown; type?: unknown; data?: { root?: unknown; targets?: unknown } };
    const root = typeof node.data?.root === 'string' && node.data.root !== '' ? node.data.root : '.';
    const targets = node.data?.targets && typeof node.data.targets === 'object' ? Object.keys(node.data.targets) : [];
    projects.push({
      name: typeof node.name === 'string' ? node.name : key,
      root: root.replace(/\/+$/, '') || '.',
      ...(typeof node.type === 'string' ? { type: node.type } : {}),
      targets,
    });
  }
  projects.sort((a, b) => a.name.localeCompare(b.name));
  const dependencies: Record<string, string[]> = {};
  for (const [source, list] of Object.entries(parsed.graph?.dependencies ?? {})) {
    if (!Array.isArray(list)) continue;
    dependencies[source] = list
      .map((d: { target?: unknown }) => d?.target)
      .filter((t): t is string => typeof t === 'string' && !t.startsWith('npm:'));
  }
  return { projects, dependencies };
}

/** A JSON array of project names (`nx show projects --json`), ignoring anything printed around it. */
export function parseNxProjectList(stdout: string): string[] {
  const start = stdout.indexOf('[');
  const end = stdout.lastIndexOf(']');
  if (start < 0 || end < start) throw new Error(`no JSON list of projects in the output of nx: ${stdout.slice(0, 200)}`);
  const list: unknown = JSON.parse(stdout.slice(start, end + 1));
  if (!Array.isArray(list) || list.some((n) => typeof n !== 'string')) throw new Error('the output of nx is not a list of project names');
  return list as string[];
}

/** `nx show projects --affected --stdin` reads one file per line, which leaves out only newlines. */
export function affectedStdin(files: readonly string[]): string {
  return files.filter((f) => f.length > 0 && !f.includes('\n')).join('\n') + '\n';
}
