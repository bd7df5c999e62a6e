/**
 * `POST /api/mdm/apple/enroll` (Default team) and `/api/mdm/apple/enroll/:enrollmentToken`
 * (PROTOCOL.md sections 2 and 6): 401 with the sign-in challenge and an empty body until the device
 * presents a valid token, then the signed enrollment profile.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { acceptRawBodies, rawBody } from '../bodies.js'

/** The body is a CMS of about 3.5 KB; nothing legitimate comes near this. */
export const ENROLL_BODY_LIMIT = 64 * 1024

export default async function enrollRoute(app: FastifyInstance) {
  // Any Content-Type, never dispatched on: devices send application/pkcs7-signature, and iOS 15 sent
  // application/x-www-form-urlencoded with the same CMS body.
  acceptRawBodies(app, ENROLL_BODY_LIMIT)

  async function enroll(request: FastifyRequest<{ Params: { enrollmentToken?: string } }>, reply: FastifyReply) {
    const outcome = await app.services.enrollment.enroll({
      teamToken: request.params.enrollmentToken,
      body: rawBody(request.body),
      authorization: request.headers.authorization,
    })
    const { untrustedReason, chainSeen, ...device } = outcome.device
    if (untrustedReason) {
      const why =
        app.config.enrollment.deviceSignature === 'log'
          ? 'ENROLL_DEVICE_SIGNATURE=log'
          : `Apple's chain for ${device.family} is not pinned yet: please report the chain below so it can be`
      request.log.warn({ device, untrustedReason, chainSeen }, `enroll request not signed by a known Apple device chain; accepted (${why})`)
    }

    if (outcome.kind === 'challenge') {
      request.log.info({ device, reason: outcome.reason }, 'enroll: sign-in required')
      return reply.code(401).headers(outcome.headers).send()
    }
    request.log.info({ device, enrollmentProfileId: outcome.profile.record.id }, 'enroll: profile issued')
    return reply
      .code(200)
      .headers({
        'content-type': 'application/x-apple-aspen-config',
        'content-disposition': 'attachment; filename="enrollment.mobileconfig"',
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      })
      .send(outcome.profile.signed)
  }

  app.post('/api/mdm/apple/enroll', { bodyLimit: ENROLL_BODY_LIMIT }, enroll)
  app.post('/api/mdm/apple/enroll/:enrollmentToken', { bodyLimit: ENROLL_BODY_LIMIT }, enroll)
}
