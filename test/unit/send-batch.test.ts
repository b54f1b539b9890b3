import { describe, expect, it } from 'vitest';
import { SendBatch } from '../../src/queue/send-batch.js';

describe('SendBatch', () => {
  it('starts the operations of one turn together, in order, in the next check phase', async () => {
    const batch = new SendBatch();
    const started: string[] = [];
    const op = (name: string) => async () => {
      started.push(name);
      return name.toUpperCase();
    };
    const results = [batch.run(op('a')), batch.run(op('b'))];
    // Not started by run() itself, nor by the microtasks of this turn.
    await Promise.resolve();
    expect(started).toEqual([]);
    const later = new Promise<void>((resolve) => setImmediate(resolve)).then(() => batch.run(op('c')));
    expect(await Promise.all(results)).toEqual(['A', 'B']);
    expect(started.slice(0, 2)).toEqual(['a', 'b']);
    expect(await later).toBe('C');
    expect(started).toEqual(['a', 'b', 'c']);
  });

  it('passes a failure to its caller only', async () => {
    const batch = new SendBatch();
    const failing = batch.run(async () => {
      throw new Error('no ack');
    });
    const fine = batch.run(async () => 42);
    await expect(failing).rejects.toThrow('no ack');
    expect(await fine).toBe(42);
  });

  it('a synchronous throw rejects that operation and still starts the others', async () => {
    const batch = new SendBatch();
    const bad = batch.run((() => {
      throw new Error('bad subject');
    }) as () => Promise<never>);
    const good = batch.run(async () => 'ok');
    await expect(bad).rejects.toThrow('bad subject');
    expect(await good).toBe('ok');
  });
});
