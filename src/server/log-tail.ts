// GET /builds/:id/logs?tail=BYTES: only the end of a log (the dashboard shows a huge log's tail
// first). Whole lines only: the oldest lines are dropped while the rest is over the budget, but the
// last line is always kept, however long (a log line is at most 64 KiB, log-stream.ts).

export const MAX_TAIL_BYTES = 64 * 1024 * 1024;

export interface LogTail {
  lines: string[];
  /** What was left out before `lines`: the client may ask for the whole log. */
  skippedBytes: number;
  skippedLines: number;
}

export async function keepTail(lines: AsyncIterator<string>, first: IteratorResult<string>, maxBytes: number): Promise<LogTail> {
  let kept: string[] = [];
  let sizes: number[] = [];
  let head = 0;
  let bytes = 0;
  let skippedBytes = 0;
  let skippedLines = 0;
  for (let next = first; !next.done; next = await lines.next()) {
    const size = Buffer.byteLength(next.value) + 1;
    kept.push(next.value);
    sizes.push(size);
    bytes += size;
    while (bytes > maxBytes && kept.length - head > 1) {
      bytes -= sizes[head]!;
      skippedBytes += sizes[head]!;
      skippedLines++;
      head++;
    }
    // Compact now and then, so a long log does not keep every line it dropped.
    if (head > 4096 && head * 2 > kept.length) {
      kept = kept.slice(head);
      sizes = sizes.slice(head);
      head = 0;
    }
  }
  return { lines: kept.slice(head), skippedBytes, skippedLines };
}
