// A pino logger whose lines a test reads back: parsed (lines) or as written (text).

import { Writable } from 'node:stream';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface CapturedLog {
  readonly log: Logger;
  /** Every line so far, parsed; the array grows as the logger writes. */
  readonly lines: LogLine[];
  /** Everything written so far, as text. */
  text(): string;
}

export function captureLog(level: LevelWithSilent = 'info'): CapturedLog {
  const lines: LogLine[] = [];
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const text = chunk.toString('utf8');
      out += text;
      for (const l of text.split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { log: pino({ level }, sink), lines, text: () => out };
}
