/**
 * The enrollment front door: service discovery and the enroll endpoint (PROTOCOL.md sections 1, 2, 6).
 * Each is its own encapsulated plugin: enroll replaces the body parsers in its scope.
 */
import type { FastifyInstance } from 'fastify'
import { PLACEHOLDER_TOPIC } from '../../services/profiles.js'
import enrollRoute from './enroll.js'
import wellKnownRoute from './well-known.js'

export default async function enrollmentRoutes(app: FastifyInstance) {
  if (!app.config.apnsTopic) {
    app.log.warn(
      { topic: PLACEHOLDER_TOPIC },
      'APNS_TOPIC is not set: enrollment profiles carry a placeholder push topic; devices enrolled now never receive pushes and must enroll again once APNS_TOPIC is set',
    )
  }
  await app.register(wellKnownRoute)
  await app.register(enrollRoute)
}
