// The result index every worker shares: the JetStream KV bucket `nats.resultBucket`, key = the
// result key (core/result-key.ts), value = the ResultEntry JSON. A commit one worker built is
// found by every other; two workers that build one key at once write the same image's entry.

import type { KV } from 'nats';
import type { ResultEntry, ResultIndex } from '../core/ports.js';
import { parseResultEntry } from '../cache/result-index-file.js';
import { natsUnavailable, openBucket, type NatsContext } from './nats.js';

export const DEFAULT_RESULT_BUCKET = 'oci-build-results';

export class KvResultIndex implements ResultIndex {
  private bucket: Promise<KV> | undefined;

  constructor(
    private readonly ctx: NatsContext,
    private readonly name: string = ctx.config.resultBucket ?? DEFAULT_RESULT_BUCKET,
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

  async put(entry: ResultEntry): Promise<void> {
    const kv = await this.kv();
    try {
      await kv.put(entry.key, JSON.stringify(entry));
    } catch (err) {
      throw natsUnavailable(`Cannot record result ${entry.key.slice(0, 12)} in bucket ${this.name}`, err, this.ctx.config);
    }
  }
}
