/**
 * routes/: one folder per endpoint group (PROTOCOL.md section 0). A route parses the HTTP shape (body
 * parser and size limit per group, zod schemas for JSON), calls one service, and answers in its
 * protocol's form through its own `errorHandler()` (plugins/errors.ts): enroll speaks 401 +
 * WWW-Authenticate, SCEP answers policy refusals as CertRep FAILURE, check-in never answers 401 for an
 * identity failure, the SSO pages answer with HTML for people, the JSON APIs with `{error, message}`.
 * Routes never reach storage.
 */
import type { FastifyInstance } from 'fastify'
import adminRoutes from './admin/index.js'
import enrollmentRoutes from './enroll/index.js'
import essoRoutes from './esso/index.js'
import healthRoutes from './health/index.js'
import mdmRoutes from './mdm/index.js'
import oauth2Routes from './oauth2/index.js'
import scepRoutes from './scep/index.js'
import ssoRoutes from './sso/index.js'

export default async function routes(app: FastifyInstance) {
  await app.register(healthRoutes)
  await app.register(oauth2Routes)
  await app.register(enrollmentRoutes)
  await app.register(essoRoutes)
  await app.register(ssoRoutes)
  await app.register(scepRoutes)
  await app.register(mdmRoutes)
  await app.register(adminRoutes)
}
