/**
 * The administration API (`/api/v1/admin/...`): JSON in and out, snake_case fields, zod schemas through
 * the Fastify type provider (the OpenAPI document at /api/v1/openapi.json is generated from them).
 *
 * Authentication: `Authorization: Bearer <ADMIN_API_TOKEN>`, compared in constant time; anything else is
 * 401. With ADMIN_API_TOKEN unset no admin route exists (404) and the start-up banner says how to enable
 * it. Requests per minute per client address are limited (ADMIN_RATE_LIMIT, counted in the database for all processes). Every change an
 * administrator makes is one log line `admin: <action>` saying what changed (`audit`).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { TooManyRequestsError } from '../../errors.js'
import { UnauthorizedError } from './audit.js'
import { ADMIN_PREFIX } from '../../plugins/openapi.js'
import { registerRateLimit } from '../rate-limit.js'
import abmRoutes from './abm.js'
import commandRoutes from './commands.js'
import declarationRoutes from './declarations.js'
import enrollmentRoutes from './enrollments.js'
import pushRoutes from './push.js'
import teamRoutes from './teams.js'
import userRoutes from './users.js'

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest()

export default async function adminRoutes(app: FastifyInstance) {
  const admin = app.config.admin
  if (!admin) return
  const expected = digest(admin.token)

  await app.register(
    async (scope) => {
      await registerRateLimit(scope, 'admin', { global: false, max: admin.rateLimitPerMinute, errorResponseBuilder: () => new TooManyRequestsError() })
      // The limit is a scope hook added before the token check, so failed guesses count too: the plugin's
      // own per-route hooks would run after the check and never see a request it refused.
      scope.addHook('onRequest', scope.rateLimit())
      scope.addHook('onRequest', async (request) => {
        const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(request.headers.authorization ?? '')
        // Hashing both sides first makes the comparison constant-time whatever the lengths.
        if (!m || !timingSafeEqual(digest(m[1]!), expected)) throw new UnauthorizedError()
      })
      await scope.register(teamRoutes)
      await scope.register(userRoutes)
      await scope.register(enrollmentRoutes)
      await scope.register(commandRoutes)
      await scope.register(pushRoutes)
      await scope.register(declarationRoutes)
      await scope.register(abmRoutes)
    },
    { prefix: ADMIN_PREFIX },
  )
}
