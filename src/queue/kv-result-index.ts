// The result index every worker shares: the JetStream KV bucket `nats.resultBucket`, key = the
// result key (core/result-key.ts), value = the ResultEntry JSON. A commit one worker built is
// found by every other. A build about to make a key's image claims it under `claim.<key>` (a
// create that only one writer wins), refreshed every CLAIM_REFRESH_MS while it builds and deleted
// when it ends: the other builds of that key wait for its image (core/result-reuse.ts).

import type { KV } from 'nats';
import type { ClaimAnswer, ClaimHolder, ResultClaim, ResultEntry, ResultIndex } from '../core/ports.js';
import { CLAIM_REFRESH_MS, keptClaim } from '../core/result-reuse.js';
import { parseClaimHolder, parseResultEntry } from '../cache/result-index-file.js';
import { JsErrorCode, isJsError } from './nats-errors.js';
import { natsUnavailable, openBucket, type NatsContext } from './nats.js';

/** A conditional KV write that lost: the key holds another revision than the one expected. */
const isWrongRevision = (err: unknown) => isJsError(err, JsErrorCode.WrongLastSequence);

export const DEFAULT_RESULT_BUCKET = 'oci-build-results';

export class KvResultIndex implements ResultIndex {
  private bucket: Promise<KV> | undefined;

  constructor(
    private readonly ctx: NatsContext,
    private readonly name: string = ctx.config.resultBucket ?? DEFAULT_RESULT_BUCKET,
    /** For tests: how often a held claim is refreshed. */
    private readonly claimRefreshMs: number = CLAIM_REFRESH_MS,
  ) {}

  private kv(): Promise<KV> {
    this.bucket ??= openBucket(this.ctx, this.name).catch((err: unknown) => {
      this.bucket = undefined;
      throw natsUnavailable(`Cannot open the result bucket ${this.name}`, err, this.ctx.config);
    });
    return this.bucket;
  }

  async get(key: string): Promise<ResultEntry | undefined> {
    const kv = await this.kv();
    try {
      const entry = await kv.get(key);
      if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
      return parseResultEntry(entry.string(), key);
    } catch (err) {
      throw natsUnavailable(`Cannot read result ${key.slice(0, 12)} from bucket ${this.name}`, err, this.ctx.config);
    }
  }

  async claim(key: string, holder: ClaimHolder, replacing?: number): Promise<ClaimAnswer> {
    const kv = await this.kv();
    const claimKey = `claim.${key}`;
    const data = JSON.stringify(holder);
    // A claim deleted between the write that lost and the read: claimed again, a few times at most.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const revision = replacing === undefined ? await kv.create(claimKey, data) : await kv.update(claimKey, data, replacing);
        return { claimed: heldClaim(kv, claimKey, data, revision, this.claimRefreshMs) };
      } catch (err) {
        if (!isWrongRevision(err)) throw natsUnavailable(`Cannot claim result ${key.slice(0, 12)} in bucket ${this.name}`, err, this.ctx.config);
      }
      let current;
      try {
        current = await kv.get(claimKey);
      } catch (err) {
        throw natsUnavailable(`Cannot read the claim of result ${key.slice(0, 12)} in bucket ${this.name}`, err, this.ctx.config);
      }
      if (current && current.operation === 'PUT') return { heldBy: parseClaimHolder(current.string()), revision: current.revision, refreshedAt: current.created.getTime() };
      replacing = undefined;
    }
    throw natsUnavailable(`Cannot claim result ${key.slice(0, 12)} in bucket ${this.name}`, new Error('the claim kept changing'), this.ctx.config);
  }

  async put(entry: ResultEntry): Promise<void> {
    const kv = await this.kv();
    try {
      await kv.put(entry.key, JSON.stringify(entry));
    } catch (err) {
      throw natsUnavailable(`Cannot record result ${entry.key.slice(0, 12)} in bucket ${this.name}`, err, this.ctx.config);
    }
  }
}

/** A claim this process holds: rewritten while it is ours (its revision is its heartbeat), deleted on release while it is still ours. */
function heldClaim(kv: KV, claimKey: string, data: string, revision: number, refreshMs: number): ResultClaim {
  let current = revision;
  return keptClaim(
    {
      refresh: async () => {
        try {
          current = await kv.update(claimKey, data, current);
          return true;
        } catch (err) {
          // Another revision: taken over. Anything else (NATS away): the next refresh tries again.
          return !isWrongRevision(err);
        }
      },
      release: () => kv.delete(claimKey, { previousSeq: current }),
    },
    refreshMs,
  );
}
