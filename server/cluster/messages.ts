// What the primary and the serving workers of a cluster say to each other
// over node:cluster's IPC channel (serialization 'advanced', so Maps, typed
// arrays and Buffers arrive as themselves). Plain data only.

import type { ConfigOnWire } from './zone-refs.js';
import type { ServiceAnswer } from '../answer/policy/types.js';
import type { CookieSecret } from '../wire/cookie.js';
import type { QueryStatsDelta } from '../metrics/query-stats.js';

/** Primary → worker. */
export type ToWorker =
  | {
      readonly type: 'start';
      /** Where to serve UDP: the primary's listen addresses, with the ports its TCP listeners got. */
      readonly listen: readonly { readonly host: string; readonly port: number }[];
      readonly cookieSecret: CookieSecret | undefined;
      /** Serving processes in all: rate limits are divided among them. */
      readonly workers: number;
      readonly logLevel: string;
      /** Share of queries to log (log.query_log.sample). */
      readonly querySample: number;
    }
  /** A new config (start, reload) and the answers to serve with it; the worker says 'applied' once it serves them. */
  | { readonly type: 'config'; readonly config: ConfigOnWire; readonly answers: ReadonlyMap<string, ServiceAnswer> }
  /** Build and serve the snapshot of the last config with these answers. */
  | {
      readonly type: 'answers';
      readonly answers: ReadonlyMap<string, ServiceAnswer>;
      /** The keys whose answers differ from the last answers this worker was sent; absent = build from scratch. */
      readonly changed?: readonly string[];
    };

/** One resolver's queries for one health-driven name within a report interval. */
export interface ServiceQueries {
  readonly label: string;
  readonly client: string;
  readonly first: number;
  readonly last: number;
}

/** Worker → primary. */
export type FromWorker =
  /** Its message handler is installed: messages sent before that would be lost. */
  | { readonly type: 'hello' }
  | { readonly type: 'listening' }
  /** It serves the config it was last sent (the primary sends the next worker its copy only then). */
  | { readonly type: 'applied' }
  | { readonly type: 'failed'; readonly error: string }
  | {
      readonly type: 'report';
      readonly stats: QueryStatsDelta | undefined;
      /** For the drain tracker: who asked for which health-driven name, first and last time in the interval. */
      readonly services: readonly ServiceQueries[];
      /** Answers served failed open, by service label. */
      readonly failedOpen: readonly (readonly [string, number])[];
      readonly rrlDropped: number;
      readonly rrlSlipped: number;
    };
