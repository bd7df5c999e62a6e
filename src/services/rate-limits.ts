/**
 * Rate limits shared by all server processes (SECURITY.md row 22): the counters live in Postgres
 * (storage/rate-limits), so N processes behind a load balancer allow the configured number of requests
 * per client and minute, not N times it. Counters whose window ended are deleted at most once a minute
 * per process, in the background.
 *
 * A database outage is not an open door: counting fails, and the request is answered 503 like every
 * other request that needs the database (all limited endpoints do: discovery looks up teams, sign-in and
 * tokens write rows, the admin API reads them), so failing closed costs nothing a working server would
 * have served.
 */
import { createHash } from 'node:crypto'
import type { Sql } from '../storage/database.js'
import { hitRateLimit, pruneRateLimits, type RateLimitHit } from '../storage/rate-limits.js'

/** The limited endpoint groups; each counts on its own. */
export type RateLimitGroup = 'discovery' | 'enroll' | 'esso' | 'sso' | 'oauth2' | 'admin'

/** A client key longer than this (a forwarded address is whatever the proxy passed on) is stored hashed. */
const MAX_CLIENT_KEY = 100
const PRUNE_EVERY_MS = 60_000

export interface RateLimitService {
  /** Counts one request of `client` to `group` in a window of `windowMs`. */
  hit(group: RateLimitGroup, client: string, windowMs: number): Promise<RateLimitHit>
}

export interface RateLimitLog {
  warn(obj: object, msg: string): void
}

export function createRateLimitService(deps: { sql: Sql; log: RateLimitLog }): RateLimitService {
  let lastPrune = 0
  const prune = () => {
    const now = Date.now()
    if (now - lastPrune < PRUNE_EVERY_MS) return
    lastPrune = now
    pruneRateLimits(deps.sql).catch((err: Error) => deps.log.warn({ err: { message: err.message } }, 'rate limits: could not delete ended windows'))
  }
  return {
    async hit(group, client, windowMs) {
      const id = client.length > MAX_CLIENT_KEY ? `sha256:${createHash('sha256').update(client, 'utf8').digest('hex')}` : client
      const result = await hitRateLimit(deps.sql, `${group}:${id}`, windowMs)
      prune()
      return result
    },
  }
}
