// Bounded waits on conditions and events: every test wait has a deadline and says what it waited for.
export async function waitUntil<T>(what: string, probe: () => T | undefined | false | null, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves with the first value `subscribe`'s callback receives that passes `pred`. */
export function nextOf<T>(
  what: string,
  subscribe: (fn: (v: T) => void) => () => void,
  pred: (v: T) => boolean = () => true,
  timeoutMs = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const off = subscribe((v) => {
      if (!pred(v)) return;
      clearTimeout(t);
      off();
      resolve(v);
    });
    const t = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
  });
}

/** Collects values from `subscribe` until `count` arrived (resolves) or the deadline (rejects). */
export function collect<T>(
  what: string,
  subscribe: (fn: (v: T) => void) => () => void,
  count: number,
  timeoutMs = 5000,
): { done: Promise<T[]>; items: T[] } {
  const items: T[] = [];
  const done = new Promise<T[]>((resolve, reject) => {
    const off = subscribe((v) => {
      items.push(v);
      if (items.length >= count) {
        clearTimeout(t);
        off();
        resolve(items);
      }
    });
    const t = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${count} ${what} (got ${items.length}: ${JSON.stringify(items.map((i: any) => i?.frame ?? i)).slice(0, 800)})`));
    }, timeoutMs);
  });
  return { done, items };
}

/** Polls an async condition every 50 ms until it holds; throws, naming `what`, after `timeoutMs`. */
export async function eventually(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
