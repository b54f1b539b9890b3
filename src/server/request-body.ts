// Reads a request body with a size cap: the declared Content-Length is checked before reading,
// and the running total while streaming (chunked bodies declare nothing), so an oversized body
// is refused without being read whole.

import type { IncomingMessage } from 'node:http';
import { InputError } from '../core/errors.js';

export class BodyTooLargeError extends InputError {
  override readonly code = 'E_BODY_TOO_LARGE';
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

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  checkDeclaredLength(req, limit);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) reject(err);
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop reading; the caller answers 413 and closes the connection.
        req.pause();
        finish(tooLarge(limit, 'is over'));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish(undefined);
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new InputError('The client closed the connection before the body was complete'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
