// The record model shared by the master-file parser, the YAML loader and the
// zone compiler. Rdata is stored as uncompressed wire bytes: one canonical form
// that the encoder copies (compressing only RFC 1035 types) and that the
// additional-section logic can read target names from.

export interface SourceLocation {
  file: string;
  line: number;
}

export interface ZoneRecord {
  /** Owner name key (see server/wire/name.ts), lowercased. */
  owner: string;
  type: number;
  /** Always IN (1) for loaded zones; other classes are rejected by the loaders. */
  class: number;
  ttl: number;
  /** Uncompressed wire-format rdata. Embedded names keep the case they were written in. */
  rdata: Uint8Array;
  where: SourceLocation;
}
