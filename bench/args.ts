// Command-line pieces every bench script shares.

export class UsageError extends Error {
  override name = 'UsageError';
}

/** `--name` as an integer of at least `min`; `def` when absent. */
export function intArg(v: string | undefined, name: string, def: number, min: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}
