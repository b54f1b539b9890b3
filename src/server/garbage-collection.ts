// A full garbage collection on demand, for the one moment serve knows a lot of memory just became
// garbage: the end of a burst of webhook bodies that went over server.maxInflightBytes.
//
// Why: the body chunks are Buffers outside the V8 heap (Node's socket reads). V8 collects them only
// when a collection runs, and with a small heap and no allocation after the burst none does: serve
// kept ~100 MB of dead chunks for as long as it stayed idle (measured with 100 × 25 MB bodies).
// `--expose-gc` set at run time and the `gc` of a fresh context is the documented way to reach
// V8's collector without a command-line flag (node:v8 setFlagsFromString).

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

/** Runs a full collection; false where the runtime does not allow it. */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  gc();
  return true;
}
