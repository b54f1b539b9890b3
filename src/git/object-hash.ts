// The id Git gives an object: SHA-1 of "<kind> <size>\0" and the bytes (`git hash-object -t kind`).

import { createHash } from 'node:crypto';

export function gitObjectId(kind: string, data: Uint8Array): string {
  return createHash('sha1').update(`${kind} ${data.length}\0`).update(data).digest('hex');
}
