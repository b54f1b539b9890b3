// SIGINT and SIGTERM for every long-running command, one way: the first signal asks to stop
// gracefully (a build cancels, serve closes, a worker drains), a second one asks to stop now (a
// worker cancels its running builds). With no `now` handler, a second signal is left to Node's
// default (the process ends), as a user pressing Ctrl-C twice expects.

export interface ShutdownHandlers {
  /** The first SIGINT or SIGTERM. */
  graceful: (signal: NodeJS.Signals) => void;
  /** A second one; without it the listeners are removed, so Node's default applies. */
  now?: (signal: NodeJS.Signals) => void;
  /** Only these signals (default SIGINT and SIGTERM). */
  signals?: readonly NodeJS.Signals[];
}

/** Installs the handlers; returns the function that removes them. */
export function onShutdownSignals(handlers: ShutdownHandlers): () => void {
  const signals = handlers.signals ?? (['SIGINT', 'SIGTERM'] as const);
  let received = 0;
  const listener = (signal: NodeJS.Signals) => {
    received++;
    if (received === 1) {
      handlers.graceful(signal);
      if (!handlers.now) remove();
    } else {
      handlers.now?.(signal);
    }
  };
  const remove = () => {
    for (const signal of signals) process.off(signal, listener);
  };
  for (const signal of signals) process.on(signal, listener);
  return remove;
}
