// Batching of NATS writes made by independent callbacks (one per HTTP request).

/**
 * Starts operations together in the event loop's next check phase. Each webhook arrives in its own
 * callback, and nats.js writes what was queued in one callback with its own socket write; started
 * together, the writes of every request read in one loop turn leave in one.
 */
export class SendBatch {
  private queue: Array<() => void> = [];

  run<T>(operation: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => this.flush());
      this.queue.push(() => {
        try {
          operation().then(resolve, reject);
        } catch (err) {
          // One operation that throws at once must not keep the others from starting.
          reject(err);
        }
      });
    });
  }

  private flush(): void {
    const queue = this.queue;
    this.queue = [];
    for (const start of queue) start();
  }
}
