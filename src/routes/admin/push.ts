/**
 * `POST /api/v1/admin/enrollments/{id}/push`: wake every channel of an enrollment now, so the device
 * checks in (and fetches its queued commands) without waiting. Answers with APNs' verdict per channel;
 * a retryable failure answers `retrying` while the server keeps trying in the background.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { PUSH_STATUSES } from '../../services/push.js'
import { audit } from './audit.js'
import { errorBody } from './pagination.js'

const params = z.object({ id: z.guid().describe('the enrollment (mdm_enrollments.id)') })

const result = z.object({
  channel_id: z.string().describe('the channel: the EnrollmentID, or EnrollmentID:EnrollmentUserID for a macOS user channel'),
  status: z
    .enum(PUSH_STATUSES)
    .describe(
      'delivered: APNs accepted it; invalid_token: APNs called the token invalid, no push until the device sends a new one; retrying: APNs was busy or unreachable, the server keeps trying; error: refused; config_error: the push certificate or topic is wrong; not_configured: no push certificate is set; no_push_token: the channel has no token yet',
    ),
  apns_id: z.string().optional().describe("APNs' apns-id of the push"),
  reason: z.string().optional().describe("APNs' reason, or the server's, when not delivered"),
})

const response = z.object({ enrollment_id: z.string(), results: z.array(result) })

export default async function pushRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>()

  app.post(
    '/enrollments/:id/push',
    {
      schema: {
        summary: 'Push to an enrollment now',
        description: 'Sends an MDM push to every channel of the enrollment so the device checks in (the device of a removed enrollment then learns to unenroll). 409 for an enrollment that was checked out.',
        tags: ['push'],
        params,
        response: { 200: response, 400: errorBody, 401: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (request) => {
      const { id } = request.params
      const outcomes = await app.services.push.pushEnrollment(id)
      const results = outcomes.map((o) => ({ channel_id: o.channelId, status: o.status, ...(o.apnsId ? { apns_id: o.apnsId } : {}), ...(o.reason ? { reason: o.reason } : {}) }))
      audit(request, 'enrollment.push', { enrollment: id, results: outcomes.map((o) => ({ channel: o.channelId, status: o.status, reason: o.reason })) })
      return { enrollment_id: id, results }
    },
  )
}
