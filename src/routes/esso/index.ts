/**
 * Enrollment SSO documents (PROTOCOL.md section 5), fetched by the device from the URL in the enroll
 * 401's `X-Apple-MDM-ESSO` / `X-Apple-MDM-ESSO-Developer` header, before the user has signed in:
 *   GET /api/mdm/apple/esso/:enrollmentToken            the standard document (JSON)
 *   GET /api/mdm/apple/esso/developer/:enrollmentToken  the test-mode document (JSON)
 *   GET /api/mdm/apple/esso/:enrollmentToken/profiles/:key  the signed profile a legacy configuration names
 * No authentication (the device has no identity yet): the team's unguessable token is in the path, and
 * the content is what every device of the team gets. An unknown team, or a team without Enrollment SSO,
 * is a 404 JSON. Rate limited like discovery and enroll (ENROLL_RATE_LIMIT).
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { TooManyRequestsError } from '../../errors.js'
import { registerRateLimit } from '../rate-limit.js'

const token = z.string().min(1).max(128)

export default async function essoRoutes(base: FastifyInstance) {
  const app = base.withTypeProvider<ZodTypeProvider>()
  await registerRateLimit(app, 'esso', { max: app.config.enrollment.rateLimitPerMinute, errorResponseBuilder: () => new TooManyRequestsError() })
  const esso = app.services.esso

  // Exactly application/json, as Apple's article shows; never cached (settings change).
  const json = (reply: FastifyReply, body: object) => reply.header('cache-control', 'no-store').type('application/json').send(Buffer.from(JSON.stringify(body), 'utf8'))

  app.get('/api/mdm/apple/esso/developer/:enrollmentToken', { schema: { params: z.object({ enrollmentToken: token }) } }, async (request, reply) => {
    const doc = await esso.document(request.params.enrollmentToken, 'developer')
    request.log.info('Enrollment SSO document served (test mode)')
    return json(reply, doc)
  })

  app.get('/api/mdm/apple/esso/:enrollmentToken', { schema: { params: z.object({ enrollmentToken: token }) } }, async (request, reply) => {
    const doc = await esso.document(request.params.enrollmentToken, 'standard')
    request.log.info('Enrollment SSO document served')
    return json(reply, doc)
  })

  app.get(
    '/api/mdm/apple/esso/:enrollmentToken/profiles/:key',
    { schema: { params: z.object({ enrollmentToken: token, key: z.string().regex(/^[0-9a-f]{64}$/) }) } },
    async (request, reply) => {
      const signed = await esso.legacyProfile(request.params.enrollmentToken, request.params.key)
      return reply
        .headers({ 'content-type': 'application/x-apple-aspen-config', 'content-disposition': 'attachment; filename="enrollment-sso.mobileconfig"', 'x-content-type-options': 'nosniff' })
        .send(signed)
    },
  )
}
