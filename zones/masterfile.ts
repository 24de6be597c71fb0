// RFC 1035 section 5 master files to ZoneRecords.
//
// Only syntax is checked here: well-formed owners, TTLs, classes and rdata.
// Zone-level rules (one SOA, CNAME exclusivity, names inside the zone) belong
// to the zone compiler, which sees records from YAML as well as from files.
//
// Errors never stop the parse: each bad entry becomes a ZoneFileError and the
// parser carries on, so an operator sees every mistake in one run.

import { DnsError } from '../server/wire/errors.js';
import { CLASS, TYPE } from '../server/wire/constants.js';
import { lowerKey, parseName } from '../server/wire/name.js';
import type { ZoneRecord } from './record.js';
import { runNow, STEP, type Steps } from './steps.js';
import { MAX_TTL, parseRdata, parseTtl, typeFromText, type RdataField } from './rdata-text.js';

export interface MasterFileOptions {
  /** Initial $ORIGIN, a name key. */
  origin: string;
  /** Used in error messages and in each record's `where`. */
  file: string;
  /** TTL for records without one before any $TTL (for example a default from the config). */
  defaultTtl?: number;
  /** Line number of the first line of `text`, for text embedded in another file. Default 1. */
  firstLine?: number;
}

/** One problem at one place in a zone file. The message starts with "FILE:LINE: ". */
export class ZoneFileError extends DnsError {
  override name = 'ZoneFileError';
  constructor(
    readonly file: string,
    readonly line: number,
    /** The message without the location prefix. */
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
  }
}

const MAX_LISTED_ERRORS = 50;

/** Every problem found in one parse. */
export class ZoneFileErrors extends DnsError {
  override name = 'ZoneFileErrors';
  constructor(
    readonly file: string,
    readonly errors: readonly ZoneFileError[],
  ) {
    const shown = errors.slice(0, MAX_LISTED_ERRORS).map((e) => `  ${e.message}`);
    if (errors.length > MAX_LISTED_ERRORS) shown.push(`  ... and ${errors.length - MAX_LISTED_ERRORS} more`);
    super(`${errors.length} error${errors.length === 1 ? '' : 's'} in ${file}:\n${shown.join('\n')}`);
  }
}

// ---------------------------------------------------------------------------
// Lexer: text to entries (one record or directive each, parentheses joined).

interface Entry {
  /** Line where the entry starts. */
  line: number;
  /** The entry's first line starts with a blank: the owner is omitted. */
  blankOwner: boolean;
  tokens: RdataField[];
  /** A syntax error found while reading the entry; its tokens are unreliable. */
  error?: string;
}

const NL = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SEMICOLON = 0x3b;
const LPAREN = 0x28;
const RPAREN = 0x29;

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB || c === CR;
}

// A bare token ends at whitespace or at a character with syntax of its own;
// as in BIND, a quote ends it and starts a quoted token.
function endsBareToken(c: number): boolean {
  return c === SPACE || c === TAB || c === CR || c === NL || c === SEMICOLON || c === LPAREN || c === RPAREN || c === QUOTE;
}

class Lexer {
  private pos: number;
  private line: number;

  constructor(
    private readonly text: string,
    firstLine: number,
  ) {
    // A UTF-8 byte order mark decodes to U+FEFF; it is not part of the first owner.
    this.pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
    this.line = firstLine;
  }

  /** The next entry with at least one token or an error; undefined at the end. */
  next(): Entry | undefined {
    while (this.pos < this.text.length) {
      const entry = this.readEntry();
      if (entry.tokens.length > 0 || entry.error !== undefined) return entry;
    }
    return undefined;
  }

  private readEntry(): Entry {
    const text = this.text;
    const n = text.length;
    const entry: Entry = { line: this.line, blankOwner: isBlank(text.charCodeAt(this.pos)), tokens: [] };
    let depth = 0;
    let parenLine = 0;
    let i = this.pos;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === NL) {
        i++;
        this.line++;
        if (depth === 0) break;
      } else if (isBlank(c)) {
        i++;
      } else if (c === SEMICOLON) {
        while (i < n && text.charCodeAt(i) !== NL) i++;
      } else if (c === LPAREN) {
        if (depth === 0) parenLine = this.line;
        depth++;
        i++;
      } else if (c === RPAREN) {
        if (depth === 0) entry.error ??= 'unbalanced ")" with no "(" open';
        else depth--;
        i++;
      } else if (c === QUOTE) {
        const q = this.readQuoted(i, entry);
        i = q.next;
        // Resynchronise on the line end so one stray quote costs one error.
        if (!q.closed) depth = 0;
      } else {
        const start = i;
        while (i < n) {
          const d = text.charCodeAt(i);
          if (d === BACKSLASH) {
            // The escaped character is part of the token, whatever it is, except a
            // line end: then the lone backslash stays and the rdata parser reports it.
            const e = text.charCodeAt(i + 1);
            i += e === NL || Number.isNaN(e) ? 1 : 2;
          } else if (endsBareToken(d)) break;
          else i++;
        }
        entry.tokens.push({ text: text.slice(start, i), quoted: false });
      }
    }
    if (depth > 0) entry.error ??= `"(" opened on line ${parenLine} is never closed`;
    this.pos = i;
    return entry;
  }

  /** Reads "..." starting at the opening quote; `next` is the index after it, or the line end when unterminated. */
  private readQuoted(open: number, entry: Entry): { next: number; closed: boolean } {
    const text = this.text;
    let i = open + 1;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        entry.tokens.push({ text: text.slice(open + 1, i), quoted: true });
        return { next: i + 1, closed: true };
      }
      if (c === NL) break;
      // Skip the escaped character so \" does not close the string; a line end
      // is never escaped here, so the string is reported as unterminated.
      i += c === BACKSLASH && text.charCodeAt(i + 1) !== NL ? 2 : 1;
    }
    entry.error ??= 'unterminated quoted string (a string cannot span lines; write a newline as \\010)';
    return { next: Math.min(i, text.length), closed: false };
  }
}

// ---------------------------------------------------------------------------
// Parser: entries to records.

const CLASS_MNEMONICS: ReadonlyMap<string, number> = new Map([
  ['IN', CLASS.IN],
  ['CS', 2],
  ['CH', CLASS.CH],
  ['CHAOS', CLASS.CH],
  ['HS', CLASS.HS],
  ['HESIOD', CLASS.HS],
  ['NONE', CLASS.NONE],
  ['ANY', CLASS.ANY],
]);

/** A class number when `text` is a class mnemonic or CLASSnnn, else undefined. */
function classFromText(text: string): number | undefined {
  // Cheap rejection first: this runs on the type token of every record.
  const c = text.charCodeAt(0) | 0x20;
  if (text.length > 10 || (c !== 0x61 && c !== 0x63 && c !== 0x68 && c !== 0x69 && c !== 0x6e)) return undefined;
  const upper = text.toUpperCase();
  const known = CLASS_MNEMONICS.get(upper);
  if (known !== undefined) return known;
  if (upper.startsWith('CLASS') && upper.length > 5) {
    const digits = upper.slice(5);
    if (/^[0-9]+$/.test(digits) && Number(digits) <= 0xffff) return Number(digits);
  }
  return undefined;
}

function isDigitCode(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

interface ParserState {
  origin: string;
  /** From $TTL, or the caller's default until the first $TTL. */
  ttl: number | undefined;
  /** MINIMUM of the latest SOA: the legacy TTL for records when no $TTL was given. */
  soaMinimum: number | undefined;
  /** Owner for entries that omit it. */
  owner: string | undefined;
  /** The last stated owner was malformed: entries reusing it are skipped without piling up errors. */
  ownerBroken: boolean;
}

function parseOrigin(text: string, current: string): string {
  try {
    return parseName(text, current);
  } catch (e) {
    if (e instanceof DnsError) throw new DnsError(`bad $ORIGIN "${text}": ${e.message}`);
    throw e;
  }
}

function handleDirective(tokens: readonly RdataField[], state: ParserState): void {
  const name = tokens[0]!.text.toUpperCase();
  const args = tokens.slice(1);
  const only = (): string => {
    const arg = args[0];
    if (arg === undefined || args.length !== 1) throw new DnsError(`${name} takes exactly one argument`);
    if (arg.quoted) throw new DnsError(`${name} argument must not be quoted`);
    return arg.text;
  };
  switch (name) {
    case '$ORIGIN':
      // Relative to the current origin, as RFC 1035 section 5.1 allows.
      state.origin = parseOrigin(only(), state.origin);
      return;
    case '$TTL':
      state.ttl = parseTtl(only());
      return;
    case '$INCLUDE':
      throw new DnsError('$INCLUDE is not supported: list each file as its own zone source in the configuration');
    case '$GENERATE':
      throw new DnsError('$GENERATE is not supported: write the records out');
    default:
      throw new DnsError(`unknown directive ${tokens[0]!.text}`);
  }
}

function soaMinimumOf(rdata: Uint8Array): number {
  const p = rdata.length - 4;
  return rdata[p]! * 0x1000000 + ((rdata[p + 1]! << 16) | (rdata[p + 2]! << 8) | rdata[p + 3]!);
}

/** Turns one record entry into a record; undefined when it must be skipped silently. */
function parseRecord(entry: Entry, state: ParserState, file: string): ZoneRecord | undefined {
  const tokens = entry.tokens;
  let i = 0;
  let owner: string | undefined;
  if (entry.blankOwner) {
    owner = state.owner;
    if (owner === undefined && !state.ownerBroken) throw new DnsError('no owner name: the first record must start with one');
  } else {
    const first = tokens[i++]!;
    if (first.quoted) throw new DnsError(`owner name "${first.text}" must not be quoted`);
    try {
      owner = lowerKey(parseName(first.text, state.origin));
      state.owner = owner;
      state.ownerBroken = false;
    } catch (e) {
      state.owner = undefined;
      state.ownerBroken = true;
      if (e instanceof DnsError) throw new DnsError(`bad owner name "${first.text}": ${e.message}`);
      throw e;
    }
  }

  let ttl: number | undefined;
  let ttlText = '';
  let classText: string | undefined;
  // TTL and class are both optional and may come in either order (RFC 1035 section 5.1).
  for (;;) {
    const t = tokens[i];
    if (t === undefined || t.quoted) break;
    if (ttl === undefined && isDigitCode(t.text.charCodeAt(0))) {
      ttl = parseTtl(t.text);
      ttlText = t.text;
    } else if (classText === undefined && classFromText(t.text) !== undefined) {
      classText = t.text;
    } else break;
    i++;
  }
  if (classText !== undefined && classFromText(classText) !== CLASS.IN) {
    throw new DnsError(`class ${classText} is not supported: Vigil serves only class IN`);
  }

  const typeToken = tokens[i++];
  if (typeToken === undefined) throw new DnsError('missing record type');
  const typeText = typeToken.text;
  if (typeToken.quoted) throw new DnsError(`record type "${typeText}" must not be quoted`);
  if (typeText.startsWith('$')) throw new DnsError(`directive ${typeText} must start at the beginning of a line`);
  // Only a second TTL or class can reach the type position looking like one.
  if (isDigitCode(typeText.charCodeAt(0))) throw new DnsError(`TTL given twice ("${ttlText}" and "${typeText}")`);
  if (classFromText(typeText) !== undefined && typeText.toUpperCase() !== 'ANY') {
    throw new DnsError(`class given twice ("${classText}" and "${typeText}")`);
  }
  const type = typeFromText(typeText);
  const rdata = parseRdata(type, tokens.slice(i), state.origin);
  if (type === TYPE.SOA) state.soaMinimum = soaMinimumOf(rdata);

  if (ttl === undefined) ttl = state.ttl;
  // RFC 2308 section 4 / BIND: without $TTL, records take the SOA MINIMUM.
  if (ttl === undefined && state.soaMinimum !== undefined) ttl = Math.min(state.soaMinimum, MAX_TTL);
  if (ttl === undefined) throw new DnsError('no TTL: give one on the record, set $TTL, or start the zone with its SOA');

  if (owner === undefined) return undefined; // owner was malformed; already reported
  return { owner, type, class: CLASS.IN, ttl, rdata, where: { file, line: entry.line } };
}

/** Parses a whole master file, returning good records and every error found. */
export function parseMasterFileCollect(text: string, opts: MasterFileOptions): ParsedMasterFile {
  return runNow(parseMasterFileSteps(text, opts));
}

export interface ParsedMasterFile {
  records: ZoneRecord[];
  errors: ZoneFileError[];
}

/** parseMasterFileCollect as steps (zones/steps.ts), for loading without blocking the event loop. */
export function* parseMasterFileSteps(text: string, opts: MasterFileOptions): Steps<ParsedMasterFile> {
  const records: ZoneRecord[] = [];
  const errors: ZoneFileError[] = [];
  const lexer = new Lexer(text, opts.firstLine ?? 1);
  const state: ParserState = {
    origin: opts.origin,
    ttl: opts.defaultTtl,
    soaMinimum: undefined,
    owner: undefined,
    ownerBroken: false,
  };
  let n = 0;
  for (let entry = lexer.next(); entry !== undefined; entry = lexer.next()) {
    if (++n % STEP === 0) yield;
    try {
      if (entry.error !== undefined) throw new DnsError(entry.error);
      const first = entry.tokens[0]!;
      if (!entry.blankOwner && !first.quoted && first.text.startsWith('$')) handleDirective(entry.tokens, state);
      else {
        const record = parseRecord(entry, state, opts.file);
        if (record !== undefined) records.push(record);
      }
    } catch (e) {
      if (!(e instanceof DnsError)) throw e;
      errors.push(new ZoneFileError(opts.file, entry.line, e.message));
    }
  }
  return { records, errors };
}

/** Parses a whole master file; throws ZoneFileErrors listing every problem if there is any. */
export function parseMasterFile(text: string, opts: MasterFileOptions): ZoneRecord[] {
  const { records, errors } = parseMasterFileCollect(text, opts);
  if (errors.length > 0) throw new ZoneFileErrors(opts.file, errors);
  return records;
}
