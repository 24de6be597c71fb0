// Long zone work (parsing and compiling a million-record file takes seconds)
// is written once, as a generator that yields every few thousand items, and
// run in one of two ways: at once, for callers that want a plain function, or
// in slices that hand the event loop back between them, so a process that is
// answering queries while it loads a zone keeps answering (issue 6).

/** Work that yields now and then and finally returns T. */
export type Steps<T> = Generator<void, T, void>;

/** Runs the steps to the end without pausing. */
export function runNow<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * Runs the steps, returning to the event loop whenever `sliceMs` has passed
 * since the last return: pending I/O (a query, a timer) waits at most about
 * one slice plus one step. setImmediate, not a resolved promise, so that I/O
 * callbacks really run in between. An aborted `signal` stops it at the next
 * return to the loop, throwing the signal's reason: a server shutting down
 * does not finish loading a zone first.
 */
export async function runSliced<T>(steps: Steps<T>, sliceMs = 5, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  let until = performance.now() + sliceMs;
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() >= until) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
      until = performance.now() + sliceMs;
    }
  }
}

/** How many items a step covers: small enough that one step stays well under a slice. */
export const STEP = 2048;
