/**
 * Rate-limit counters shared by every server process (SECURITY.md row 22): one row per limited group and
 * client, a fixed window counted by the database's clock so that processes on different machines agree.
 * One statement per request (a named prepared statement on Postgres): it starts a new window when the
 * last one ended, else adds one, and says how many requests the window has seen and when it ends.
 */
import type { Sql } from './database.js'

const HIT = {
  name: 'rate_limit_hit',
  text: `INSERT INTO rate_limits AS r (key, hits, window_start, window_end)
VALUES ($1, 1, now(), now() + $2::integer * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE SET
  hits = CASE WHEN r.window_end <= now() THEN 1 ELSE LEAST(r.hits, 2147483646) + 1 END,
  window_start = CASE WHEN r.window_end <= now() THEN now() ELSE r.window_start END,
  window_end = CASE WHEN r.window_end <= now() THEN excluded.window_end ELSE r.window_end END
RETURNING hits, GREATEST(0, extract(epoch FROM (window_end - now())) * 1000)::float8 AS ttl_ms`,
}

const PRUNE = {
  name: 'rate_limit_prune',
  text: 'DELETE FROM rate_limits WHERE window_end <= now() RETURNING 1',
}

export interface RateLimitHit {
  /** Requests in the current window, this one included. */
  hits: number
  /** Milliseconds until the window ends. */
  ttlMs: number
}

/** Counts one request for `key` in a window of `windowMs`. */
export async function hitRateLimit(sql: Sql, key: string, windowMs: number): Promise<RateLimitHit> {
  const [row] = await sql.query<{ hits: number; ttl_ms: number }>(HIT, [key, Math.trunc(windowMs)])
  return { hits: Number(row!.hits), ttlMs: Math.ceil(Number(row!.ttl_ms)) }
}

/** Deletes the counters whose window has ended (they would restart at 1 anyway); returns how many. */
export async function pruneRateLimits(sql: Sql): Promise<number> {
  const rows = await sql.query<unknown>(PRUNE, [])
  return rows.length
}
