// Every child process the drill starts goes through one registry, so that
// clean-up is certain: a normal end stops them politely, and an error, an
// exception or a signal (SIGINT, SIGTERM, SIGHUP) kills them before the
// drill's own process goes away. A resolver or a Vigil left behind would hold
// its port and skew the next run.

import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

export class ChildFailed extends Error {
  override name = 'ChildFailed';
  constructor(
    readonly child: string,
    message: string,
    readonly logFile: string,
  ) {
    super(`${child}: ${message} (log: ${logFile})`);
  }
}

export interface Child {
  readonly name: string;
  readonly logFile: string;
  readonly process: ChildProcess;
  /** Set once the process has exited; `exitCode`/`signal` as node reports them. */
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** The last `lines` lines of its combined stdout and stderr. */
  tail(lines?: number): string;
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export class ChildRegistry {
  private readonly children: Child[] = [];
  private readonly lastWords: (() => void)[] = [];
  private readonly onExit = (): void => this.killAllSync();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.killAllSync();
    for (const f of this.lastWords) {
      try {
        f();
      } catch {
        // Best effort: the children are already gone, which is what matters.
      }
    }
    this.release();
    // The default action for the signal, now that our children are gone: the
    // caller (a CLI, tap) decides what a SIGINT means, not the drill.
    process.kill(process.pid, signal);
  };
  private guarded = false;

  /** Installs the exit and signal hooks; `release()` removes them. */
  guard(): void {
    if (this.guarded) return;
    this.guarded = true;
    process.on('exit', this.onExit);
    for (const s of SIGNALS) process.on(s, this.onSignal);
  }

  /** A synchronous clean-up (say, removing a temp dir) to run when a signal interrupts the drill. */
  onInterrupt(f: () => void): void {
    this.lastWords.push(f);
  }

  release(): void {
    if (!this.guarded) return;
    this.guarded = false;
    process.off('exit', this.onExit);
    for (const s of SIGNALS) process.off(s, this.onSignal);
  }

  /** Starts `command args`, stdout and stderr appended to `logFile`, stdin closed; `env` defaults to ours. */
  spawn(name: string, command: string, args: readonly string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Child {
    const fd = openSync(logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(command, args, { stdio: ['ignore', fd, fd], env });
    } finally {
      closeSync(fd);
    }
    const child: Child = {
      name,
      logFile,
      process: proc,
      exited: undefined,
      tail(lines = 20) {
        try {
          return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
        } catch {
          return '';
        }
      },
    };
    proc.on('exit', (code, signal) => {
      child.exited = { code, signal };
    });
    // A missing binary surfaces as 'error'; without a listener it would crash the drill.
    proc.on('error', () => {
      child.exited ??= { code: null, signal: null };
    });
    this.children.push(child);
    return child;
  }

  /** SIGKILL to every child still running; safe in an 'exit' handler (synchronous). */
  killAllSync(): void {
    for (const c of this.children) {
      if (c.exited === undefined && c.process.pid !== undefined) {
        try {
          c.process.kill('SIGKILL');
        } catch {
          // Already gone between the check and the kill.
        }
      }
    }
  }

  /** SIGTERM to every child, SIGKILL to those still running after `graceMs`; resolves when all have exited. */
  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all(this.children.map((c) => stopChild(c, graceMs)));
  }
}

async function stopChild(c: Child, graceMs: number): Promise<void> {
  if (c.exited !== undefined || c.process.pid === undefined) return;
  const gone = new Promise<void>((resolve) => {
    if (c.exited !== undefined) resolve();
    else c.process.once('exit', () => resolve());
  });
  c.process.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (c.exited === undefined) c.process.kill('SIGKILL');
  }, graceMs);
  await gone;
  clearTimeout(timer);
}
