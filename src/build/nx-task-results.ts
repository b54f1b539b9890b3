// What Nx says about the tasks it ran, read from two places:
// - the task profile Nx writes when NX_PROFILE names a file (Chrome trace events, one per task,
//   with the task's status — `success`, `failure`, `skipped`, `local-cache`,
//   `local-cache-kept-existing`, `remote-cache` — and its start and duration). It is private to
//   the run, unlike `run.json` in the shared cache directory, which concurrent builds overwrite.
// - the static output style (`--output-style=static`), whose `> nx run PROJECT:TARGET [status]`
//   headers split the output per task: each failed task's last lines go into its error, and the
//   headers stand in for the profile if Nx did not write one.
// Pure functions: the Nx builder feeds them, the unit tests too.

export interface NxTaskResult {
  /** `project:target` (or `project:target:configuration`). */
  taskId: string;
  project: string;
  target: string;
  /** Nx's task status (see above). */
  status: string;
  /** Epoch milliseconds. */
  startMs?: number;
  durationMs?: number;
}

const CACHE_STATUSES = new Set(['local-cache', 'local-cache-kept-existing', 'remote-cache']);

/** The task's outputs came from the Nx cache instead of running its command. */
export function isCacheHit(status: string): boolean {
  return CACHE_STATUSES.has(status);
}

interface ProfileEvent {
  name?: unknown;
  ph?: unknown;
  ts?: unknown;
  dur?: unknown;
  args?: { target?: { project?: unknown; target?: unknown }; status?: unknown };
}

/** The tasks of an NX_PROFILE file; an unreadable profile gives no tasks (the output headers remain). */
export function parseNxProfile(text: string): NxTaskResult[] {
  let events: unknown;
  try {
    events = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(events)) return [];
  const results: NxTaskResult[] = [];
  for (const event of events as ProfileEvent[]) {
    if (!event || event.ph !== 'X' || typeof event.name !== 'string' || typeof event.args?.status !== 'string') continue;
    const target = event.args.target;
    const [projectFromId = '', targetFromId = ''] = event.name.split(':');
    results.push({
      taskId: event.name,
      project: typeof target?.project === 'string' ? target.project : projectFromId,
      target: typeof target?.target === 'string' ? target.target : targetFromId,
      status: event.args.status,
      // Trace events are in microseconds.
      ...(typeof event.ts === 'number' ? { startMs: Math.round(event.ts / 1000) } : {}),
      ...(typeof event.dur === 'number' ? { durationMs: Math.round(event.dur / 1000) } : {}),
    });
  }
  return results;
}

/** ANSI escape sequences, in case a tool colours its output although NO_COLOR is set. */
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** `> nx run go-app:build  [local cache]` (the status suffix only when not run). */
const TASK_HEADER = /(?:^|\s)>\s+nx run\s+(\S+?)(?:\s+\[([^\]]+)\])?\s*$/;
/** Nx's own banners (` NX   Running target build for 4 projects failed`) end a task's section. */
const NX_BANNER = /^\s*NX\s{2,}\S/;
const LIST_ITEM = /^\s*-\s+(\S+)\s*$/;

/** Lines that say nothing about why a task failed. */
const NOISE: RegExp[] = [
  /^Warning: command ".*" exited with non-zero status code$/,
  /^\[ERROR\]\s*$/,
  /^\[ERROR\] (To see the full stack trace|Re-run Maven using|For more information about the errors|\[Help \d+\] http)/,
];

export interface NxTaskSection {
  taskId: string;
  /** The header's status, e.g. `local cache`, `existing outputs match the cache, left as is`. */
  label?: string;
  /** The last lines of the task's output. */
  lines: string[];
}

/** Splits Nx's static output into per-task sections, line by line as it streams. */
export class NxOutputSections {
  readonly sections = new Map<string, NxTaskSection>();
  /** From the final summary: `Failed tasks:` and the tasks not run because a dependency failed. */
  readonly failedTasks: string[] = [];
  readonly notRunTasks: string[] = [];
  /** The last lines of the whole output (for an error of Nx itself). */
  readonly tail: string[] = [];
  private current: NxTaskSection | undefined;
  private list: string[] | undefined;

  constructor(private readonly keep = 40) {}

  feed(rawLine: string): void {
    const line = stripAnsi(rawLine);
    if (line.trim()) push(this.tail, line, this.keep);
    const header = TASK_HEADER.exec(line);
    if (header) {
      const taskId = header[1]!;
      const section: NxTaskSection = { taskId, ...(header[2] ? { label: header[2] } : {}), lines: [] };
      this.sections.set(taskId, section);
      this.current = section;
      this.list = undefined;
      return;
    }
    if (NX_BANNER.test(line)) {
      this.current = undefined;
      this.list = undefined;
      return;
    }
    if (/^\s*Failed tasks:\s*$/.test(line)) {
      this.current = undefined;
      this.list = this.failedTasks;
      return;
    }
    if (/^\s*Tasks not run because their dependencies failed/.test(line)) {
      this.current = undefined;
      this.list = this.notRunTasks;
      return;
    }
    if (this.list) {
      const item = LIST_ITEM.exec(line);
      if (item) this.list.push(item[1]!);
      else if (line.trim()) this.list = undefined;
      return;
    }
    if (this.current && line.trim()) push(this.current.lines, line, this.keep);
  }

  /** The lines telling why `taskId` failed, noise removed, at most `max`. */
  errorLines(taskId: string, max = 12): string[] {
    const lines = this.sections.get(taskId)?.lines ?? [];
    return lines.filter((l) => !NOISE.some((n) => n.test(l.trim()))).slice(-max);
  }
}

function push(list: string[], line: string, keep: number): void {
  list.push(line);
  if (list.length > keep) list.shift();
}
