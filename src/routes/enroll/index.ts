/**
 * The enrollment front door: service discovery and the enroll endpoint (PROTOCOL.md sections 1, 2, 6).
 * Each is its own encapsulated plugin (enroll replaces the body parsers in its scope) with its own rate
 * limit per client address (ENROLL_RATE_LIMIT per minute, counted in the database for all processes): both answer anyone, before any sign-in.
 */
import type { FastifyInstance } from 'fastify'
import { TooManyRequestsError } from '../../errors.js'
import { PLACEHOLDER_TOPIC } from '../../services/profiles.js'
import { registerRateLimit } from '../rate-limit.js'
import enrollRoute from './enroll.js'
import wellKnownRoute from './well-known.js'

export default async function enrollmentRoutes(app: FastifyInstance) {
  if (!app.config.apnsTopic) {
    app.log.warn(
      { topic: PLACEHOLDER_TOPIC },
      'APNS_TOPIC is not set: enrollment profiles carry a placeholder push topic; devices enrolled now never receive pushes and must enroll again once APNS_TOPIC is set',
    )
  }
  const limited = (group: 'discovery' | 'enroll', route: (app: FastifyInstance) => Promise<void>) => async (scope: FastifyInstance) => {
    await registerRateLimit(scope, group, { max: app.config.enrollment.rateLimitPerMinute, errorResponseBuilder: () => new TooManyRequestsError() })
    await scope.register(route)
  }
  await app.register(limited('discovery', wellKnownRoute))
  await app.register(limited('enroll', enrollRoute))
}
