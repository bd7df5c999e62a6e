/**
 * `@fastify/rate-limit` with its counters in the database (services/rate-limits): every process behind a
 * load balancer counts into the same rows, so the limits hold for the deployment, not per process.
 * Each group (discovery, enroll, SSO, token endpoint, admin API, ESSO documents) counts on its own, per
 * client address (`request.ip`: set TRUST_PROXY behind a proxy), in one-minute windows.
 *
 * When the database cannot count, the request fails with the database's error, answered 503 +
 * Retry-After by the scope's error handler like any request during an outage (fail closed; see
 * services/rate-limits for why that costs nothing).
 */
import rateLimit, { type RateLimitPluginOptions } from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { RateLimitGroup, RateLimitService } from '../services/rate-limits.js'

export const RATE_LIMIT_WINDOW_MS = 60_000

type IncrCallback = (error: Error | null, result?: { current: number; ttl: number }) => void

function sharedStore(service: RateLimitService, group: RateLimitGroup) {
  return class SharedRateLimitStore {
    incr(key: string, cb: IncrCallback, timeWindow: number) {
      service.hit(group, key, timeWindow).then(
        (hit) => cb(null, { current: hit.hits, ttl: hit.ttlMs }),
        (err: Error) => cb(err),
      )
    }
    child() {
      return new SharedRateLimitStore()
    }
  }
}

/** Registers the limit for `group` in `scope`: `max` requests per client address per minute. */
export async function registerRateLimit(
  scope: FastifyInstance,
  group: RateLimitGroup,
  options: { max: number } & Pick<RateLimitPluginOptions, 'errorResponseBuilder' | 'global'>,
): Promise<void> {
  await scope.register(rateLimit, {
    ...options,
    timeWindow: RATE_LIMIT_WINDOW_MS,
    store: sharedStore(scope.services.rateLimits, group) as unknown as RateLimitPluginOptions['store'],
  })
}
