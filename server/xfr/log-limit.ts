// At most one log line per client per interval: refused transfers are logged
// at warn so an operator sees a misconfigured secondary, but anyone can send
// AXFR queries, and a scanner must not be able to fill the log with them.

/** Entries kept before old ones are swept; a flood from many addresses costs this much memory at most. */
const MAX_CLIENTS = 4096;

export class PerClientLogLimit {
  private readonly last = new Map<string, number>();

  constructor(private readonly intervalMs = 1000) {}

  /** True when a line about `client` may be written at `now` (milliseconds), and records that it was. */
  allow(client: string, now: number): boolean {
    const prev = this.last.get(client);
    if (prev !== undefined && now - prev < this.intervalMs) return false;
    if (prev === undefined && this.last.size >= MAX_CLIENTS) {
      for (const [c, t] of this.last) if (now - t >= this.intervalMs) this.last.delete(c);
      // Every entry is recent: this many clients within one interval is a flood, and silence is the safe answer.
      if (this.last.size >= MAX_CLIENTS) return false;
    }
    this.last.set(client, now);
    return true;
  }
}
