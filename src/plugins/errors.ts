/**
 * The default translation of errors into HTTP for JSON APIs: `{error, message}`. Protocol route groups
 * (enroll, SCEP, check-in, SSO pages) install their own handlers in their plugin scope and fall back to
 * `toHttpError` for anything they do not handle specially.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, isDatabaseUnavailable } from '../errors.js'

export interface HttpError {
  status: number
  code: string
  message: string
}

/** Maps any thrown value to a status, a code and a message that is safe to show. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof AppError) {
    return { status: err.status, code: err.code, message: err.expose ? err.message : defaultMessage(err.status) }
  }
  if (isDatabaseUnavailable(err)) {
    return { status: 503, code: 'service_unavailable', message: defaultMessage(503) }
  }
  const fe = err as Partial<FastifyError>
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Fastify's own client errors: validation, body too large, unsupported media type, bad JSON.
    const code = fe.validation ? 'invalid_request' : fastifyCode(fe.code, fe.statusCode)
    return { status: fe.statusCode, code, message: fe.message ?? defaultMessage(fe.statusCode) }
  }
  return { status: 500, code: 'internal_error', message: defaultMessage(500) }
}

function fastifyCode(code: string | undefined, status: number): string {
  if (status === 413) return 'payload_too_large'
  if (status === 415) return 'unsupported_media_type'
  if (code === 'FST_ERR_CTP_INVALID_JSON_BODY' || code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'invalid_request'
  return 'bad_request'
}

function defaultMessage(status: number): string {
  switch (status) {
    case 400:
      return 'Bad request'
    case 401:
      return 'Unauthorized'
    case 403:
      return 'Forbidden'
    case 404:
      return 'Not found'
    case 503:
      return 'Service temporarily unavailable, try again shortly'
    default:
      return status >= 500 ? 'Internal server error' : 'Request failed'
  }
}

/** Logs an error at the level its status deserves, with the real reason. */
export function logError(request: FastifyRequest, err: unknown, http: HttpError): void {
  if (http.status >= 500 && http.status !== 503) request.log.error({ err }, 'request failed')
  else if (http.status === 503) request.log.warn({ err }, 'dependency unavailable')
  else request.log.info({ reason: { type: (err as Error)?.name, message: (err as Error)?.message, code: (err as { code?: unknown })?.code } }, 'request rejected')
}

export function sendJsonError(reply: FastifyReply, http: HttpError): FastifyReply {
  if (http.status === 503) reply.header('retry-after', '5')
  return reply.code(http.status).type('application/json; charset=utf-8').send({ error: http.code, message: http.message })
}

export default fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err, request, reply) => {
      const http = toHttpError(err)
      logError(request, err, http)
      return sendJsonError(reply, http)
    })
    app.setNotFoundHandler((request, reply) => {
      return sendJsonError(reply, { status: 404, code: 'not_found', message: `No route for ${request.method} ${request.url.split('?')[0]}` })
    })
  },
  { name: 'errors' },
)
