// Reads a request body with a size cap and a memory budget shared by every request.
//
// The size cap: the declared Content-Length is checked before reading, and the running total while
// streaming (chunked bodies declare nothing), so an oversized body is refused without being read
// whole.
//
// The budget (`server.maxInflightBytes`): the bytes held for bodies still arriving, summed over all
// connections. Without it, anyone who can open sockets holds maxBodyBytes per socket (100 sockets
// × 25 MB of bad-signature bodies took serve to 2.6 GB). When a chunk would go over, the buffers of
// the largest bodies in flight are dropped until it fits: those keep streaming (their HMAC is still
// computed chunk by chunk by the caller's `onChunk`) but keep no bytes, and their request is refused
// at the end (401 when the signature is wrong, 503 when it is right). Largest first, so small,
// legitimate webhooks are still buffered while a few huge bodies cannot crowd them out.
//
// The body is consumed as fast as it arrives (flowing mode, never paused): a paused socket would
// leave the bytes in Node's own stream buffers, outside the budget.

import type { IncomingMessage } from 'node:http';
import { InputError } from '../core/errors.js';

export class BodyTooLargeError extends InputError {
  override readonly code = 'E_BODY_TOO_LARGE';
}

/** The client went away before the body was complete. */
export class BodyAbortedError extends InputError {
  override readonly code = 'E_ABORTED';
}

function tooLarge(limit: number, what: string): BodyTooLargeError {
  return new BodyTooLargeError(`The request body ${what} server.maxBodyBytes (${limit} bytes)`, {
    hint: 'Raise server.maxBodyBytes (OCI_BUILD_SERVER_MAX_BODY_BYTES) if such bodies are expected; GitHub caps webhooks at 25 MB.',
  });
}

/** Throws BodyTooLargeError at once when the declared length is over the limit. */
export function checkDeclaredLength(req: IncomingMessage, limit: number): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(limit, `declares ${declared} bytes, over`);
}

/** One body being buffered under an InflightBudget. */
class InflightBody {
  chunks: Buffer[] = [];
  /** Bytes held (0 once dropped). */
  held = 0;
  dropped = false;
}

/** The bytes held for request bodies across all connections, with a ceiling. */
export class InflightBudget {
  private used = 0;
  private readonly bodies = new Set<InflightBody>();
  /** Bodies whose buffer was dropped since start (metrics, tests). */
  droppedCount = 0;
  private droppedSinceIdle = false;

  /**
   * `onGarbage`: called when the last body in flight ends after some were dropped: what the burst
   * allocated is garbage now (see garbage-collection.ts).
   */
  constructor(
    readonly maxBytes: number,
    private readonly onGarbage?: () => void,
  ) {}

  /** Bytes held now. */
  get usedBytes(): number {
    return this.used;
  }

  open(): InflightBody {
    const body = new InflightBody();
    this.bodies.add(body);
    return body;
  }

  /**
   * Keeps `chunk` for `body` if the budget allows, after dropping the largest buffers (this body's
   * own included, counted with the chunk) until it does. False: `body` keeps nothing from now on.
   */
  hold(body: InflightBody, chunk: Buffer): boolean {
    if (body.dropped) return false;
    while (this.used + chunk.length > this.maxBytes) {
      let largest = body;
      let largestSize = body.held + chunk.length;
      for (const other of this.bodies) {
        if (!other.dropped && other !== body && other.held > largestSize) {
          largest = other;
          largestSize = other.held;
        }
      }
      this.drop(largest);
      if (largest === body) return false;
    }
    body.chunks.push(chunk);
    body.held += chunk.length;
    this.used += chunk.length;
    return true;
  }

  /** Gives back what `body` holds; its chunks become the caller's (or garbage). */
  release(body: InflightBody): void {
    if (!this.bodies.delete(body)) return;
    this.used -= body.held;
    body.held = 0;
    if (this.bodies.size === 0 && this.droppedSinceIdle) {
      this.droppedSinceIdle = false;
      this.onGarbage?.();
    }
  }

  private drop(body: InflightBody): void {
    this.used -= body.held;
    body.held = 0;
    body.chunks = [];
    body.dropped = true;
    this.droppedCount++;
    this.droppedSinceIdle = true;
  }
}

export interface ReadBodyOptions {
  /** server.maxBodyBytes */
  limit: number;
  /** Shared across requests; without one the body is held whole (up to `limit`). */
  budget?: InflightBudget;
  /** Sees every chunk, kept or not (the streaming HMAC). */
  onChunk?: (chunk: Buffer) => void;
}

export interface ReadBodyResult {
  /** Undefined when the budget dropped this body's buffer. */
  body: Buffer | undefined;
  /** Bytes received. */
  size: number;
}

export function readBody(req: IncomingMessage, options: ReadBodyOptions): Promise<ReadBodyResult> {
  const { limit, onChunk } = options;
  checkDeclaredLength(req, limit);
  const budget = options.budget ?? new InflightBudget(Number.POSITIVE_INFINITY);
  const held = budget.open();
  return new Promise((resolve, reject) => {
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      const { chunks, dropped } = held;
      budget.release(held);
      if (err) reject(err);
      else resolve({ body: dropped ? undefined : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), size });
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop reading; the caller answers 413 and closes the connection.
        req.pause();
        finish(tooLarge(limit, 'is over'));
        return;
      }
      onChunk?.(chunk);
      budget.hold(held, chunk);
    };
    const onEnd = () => finish(undefined);
    // Node reports a client that hung up mid-body as an `aborted` ECONNRESET error on the request.
    const onError = (err: Error) => finish(new BodyAbortedError('The client closed the connection before the body was complete', { cause: err }));
    const onClose = () => finish(new BodyAbortedError('The client closed the connection before the body was complete'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
