/**
 * `POST /api/v1/mdm/oauth2/token/:enrollmentToken` (and `/api/v1/mdm/oauth2/token` for the Default team): the `token-url` of the `apple-oauth2` challenge
 * (PROTOCOL.md section 4, RFC 6749 sections 4.1.3 and 6). Form body in, JSON out, every answer
 * `Cache-Control: no-store` (RFC 6749 section 5.1); errors are `{"error", "error_description"}`
 * (section 5.2). Rate limited per client address (OAUTH2_RATE_LIMIT per minute, counted in the database for all processes).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isDatabaseUnavailable } from '../../errors.js'
import { errorHandler, logError, toHttpError, type HttpError } from '../../plugins/errors.js'
import { OAuth2Error, type OAuth2ErrorCode } from '../../services/oauth2.js'
import { addFormParser } from '../bodies.js'
import { registerRateLimit } from '../rate-limit.js'

/** A code of a few KB, a redirect URI and a client id; nothing legitimate comes near this. */
export const TOKEN_BODY_LIMIT = 16 * 1024

export default async function oauth2Routes(app: FastifyInstance) {
  await registerRateLimit(app, 'oauth2', {
    max: app.config.oauth2.rateLimitPerMinute,
    errorResponseBuilder: (_request, context) =>
      new OAuth2Error(429, 'temporarily_unavailable', `Too many requests, try again in ${Math.ceil(context.ttl / 1000)} seconds`),
  })

  // Only form bodies (RFC 6749 section 4.1.3); anything else is an invalid_request, not a 415 page.
  app.removeAllContentTypeParsers()
  addFormParser(app, { bodyLimit: TOKEN_BODY_LIMIT, dropEmpty: true })

  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
  })

  app.setErrorHandler(
    errorHandler({
      map: toOAuth2Error,
      log: (request, err, http) => {
        logError(request, err, http)
        if (err instanceof OAuth2Error && err.alarm) request.log.warn({ reason: err.logReason }, 'oauth2: possible token theft')
      },
      // RFC 6749 section 5.2.
      send: (reply, http) => reply.type('application/json; charset=utf-8').send({ error: http.code, error_description: http.message }),
    }),
  )

  const token = async (request: FastifyRequest<{ Params: { enrollmentToken?: string } }>, reply: FastifyReply) => {
    const params = (request.body ?? Object.create(null)) as Record<string, string>
    const outcome = await app.services.oauth2.token({ teamToken: request.params.enrollmentToken, params })
    for (const note of outcome.notes) request.log.warn({ grantId: outcome.grantId }, `oauth2: ${note}`)
    request.log.info({ grantType: outcome.grantType, grantId: outcome.grantId, userId: outcome.userId, accessTokenId: outcome.accessTokenId }, 'oauth2: tokens issued')
    return reply.code(200).type('application/json; charset=utf-8').send(outcome.response)
  }
  app.post('/api/v1/mdm/oauth2/token', { bodyLimit: TOKEN_BODY_LIMIT }, token)
  app.post('/api/v1/mdm/oauth2/token/:enrollmentToken', { bodyLimit: TOKEN_BODY_LIMIT }, token)
}

/** Every error in the token endpoint's words: `code` is an RFC 6749 error code, `message` its description. */
function toOAuth2Error(err: unknown): HttpError & { code: OAuth2ErrorCode } {
  if (err instanceof OAuth2Error) return { status: err.status, code: err.error, message: err.description }
  if (isDatabaseUnavailable(err)) return { status: 503, code: 'temporarily_unavailable', message: 'Service temporarily unavailable, try again shortly' }
  const http = toHttpError(err)
  if (http.status >= 500) return { status: http.status, code: 'server_error', message: 'Internal server error' }
  // Fastify's own refusals: wrong or missing Content-Type, body too large; ours: Content-Encoding.
  if ((err as { code?: unknown }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return { status: 400, code: 'invalid_request', message: 'The body must be application/x-www-form-urlencoded' }
  }
  return { status: http.status, code: 'invalid_request', message: http.message }
}
