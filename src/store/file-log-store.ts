// The local LogStore: each build's full output in <workDir>/logs/<id>.log, raw lines as the tools
// printed them (no timestamps or stream markers), so the file reads and greps like the terminal;
// only the process's secrets are masked (core/secrets.ts).

import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { OciBuildError } from '../core/errors.js';
import { maskSecrets } from '../core/secrets.js';
import type { BuildLog, LogSink, LogStore, LogStream } from '../core/ports.js';
import { assertValidBuildId } from './file-build-store.js';

export interface FileLogStoreOptions {
  /** Also receives every line (e.g. the terminal under --verbose). */
  tee?: LogSink;
}

export class FileLogStore implements LogStore {
  /** @param dir the logs directory, `<workDir>/logs`; created when the first log opens. */
  constructor(
    readonly dir: string,
    private readonly options: FileLogStoreOptions = {},
  ) {}

  /** Path of a build's log file. */
  pathOf(id: string): string {
    assertValidBuildId(id);
    return join(this.dir, `${id}.log`);
  }

  /**
   * Opens (appending: a retried job keeps its earlier attempt's output) the build's log. Fails
   * here, with a typed error, when the file cannot be created; later write errors never fail the
   * build (see FileBuildLog.error).
   */
  async open(buildId: string): Promise<FileBuildLog> {
    const path = this.pathOf(buildId);
    try {
      await mkdir(this.dir, { recursive: true });
      return new FileBuildLog(path, await open(path, 'a'), this.options.tee);
    } catch (err) {
      throw new OciBuildError(`Could not open the build log ${path}: ${(err as Error).message}`, {
        cause: err,
        hint: 'Make the work directory writable, or point workDir (OCI_BUILD_WORK_DIR) elsewhere.',
      });
    }
  }
}

/**
 * Lines are appended through a file handle, those written while a write is under way together in
 * the next one (a build prints thousands of lines). Not a write stream: fs streams are the only
 * thing a CLI build would load them for, ~3 ms of its start.
 */
export class FileBuildLog implements BuildLog {
  readonly location: string;
  private closed = false;
  private writeError: Error | undefined;
  private pending: string[] = [];
  private writing: Promise<void> | undefined;

  constructor(
    path: string,
    private readonly handle: FileHandle,
    private readonly tee?: LogSink,
  ) {
    this.location = path;
  }

  /** The first error writing the file (disk full…), if any; the log stops at that point. */
  get error(): Error | undefined {
    return this.writeError;
  }

  /** One line, secrets masked; lines written after close() are dropped (the build is over). */
  write(text: string, stream?: LogStream): void {
    const line = maskSecrets(text);
    this.tee?.write(line, stream);
    if (this.closed || this.writeError) return;
    // The sink's contract has no trailing newline; one line in, one line out.
    this.pending.push(`${line}\n`);
    this.writing ??= this.drain();
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0 && !this.writeError) {
      const chunk = this.pending.join('');
      this.pending = [];
      try {
        // appendFile writes all of it (a short write is continued).
        await this.handle.appendFile(chunk, 'utf8');
      } catch (err) {
        // A full disk must not crash the build: remember the first error, drop later lines.
        this.writeError ??= err as Error;
      }
    }
    this.pending = [];
    this.writing = undefined;
  }

  /** Writes everything written and closes the file. Never rejects: the record must still be saved. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    await this.handle.close().catch(() => undefined);
  }
}
