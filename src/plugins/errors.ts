/**
 * How errors become HTTP answers: one pattern, one factory. Each protocol's route plugin installs
 * `errorHandler({...})` in its scope, saying how its errors look on the wire (JSON `{error, message}`,
 * OAuth 2 `{error, error_description}`, SCEP text, an HTML page for people); everything else is shared:
 * the status and safe message from `toHttpError`, the log line at the level the status deserves, and
 * `Retry-After` on every 503. The root scope answers `{error, message}` (this plugin).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, isDatabaseUnavailable } from '../errors.js'

export interface HttpError {
  status: number
  code: string
  message: string
}

/** Seconds a client should wait before retrying a 503 (the database or an IdP is away). */
export const RETRY_AFTER_SECONDS = 5

/** Maps any thrown value to a status, a code and a message that is safe to show. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof AppError) {
    return { status: err.status, code: err.code, message: err.publicMessage ?? (err.expose ? err.message : defaultMessage(err.status)) }
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

export function defaultMessage(status: number): string {
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
export function logError(request: FastifyRequest, err: unknown, http: HttpError, fields: Record<string, unknown> = {}): void {
  if (http.status >= 500 && http.status !== 503) request.log.error({ ...fields, err }, 'request failed')
  else if (http.status === 503) request.log.warn({ ...fields, err }, 'dependency unavailable')
  else request.log.info({ ...fields, reason: { type: (err as Error)?.name, message: (err as Error)?.message, code: (err as { code?: unknown })?.code } }, 'request rejected')
}

export function sendJsonError(reply: FastifyReply, http: HttpError): FastifyReply {
  return reply.code(http.status).type('application/json; charset=utf-8').send({ error: http.code, message: http.message })
}

export interface ErrorHandlerOptions<H extends HttpError> {
  /** This protocol's own reading of an error; undefined falls back to `toHttpError`. */
  map?: (err: unknown, request: FastifyRequest) => H | undefined
  /** The log line; `logError` by default. */
  log?: (request: FastifyRequest, err: unknown, http: H | HttpError) => void
  /** Writes the answer in this protocol's form (status and Retry-After are already set). */
  send: (reply: FastifyReply, http: H | HttpError, request: FastifyRequest, err: unknown) => FastifyReply
}

/** The one error handler of every protocol, shaped by `options`. */
export function errorHandler<H extends HttpError = HttpError>(options: ErrorHandlerOptions<H>) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const http = options.map?.(err, request) ?? toHttpError(err)
    ;(options.log ?? logError)(request, err, http)
    if (http.status === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
    reply.code(http.status)
    return options.send(reply, http, request, err)
  }
}

export default fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler(errorHandler({ send: sendJsonError }))
    // The path is in the request's log line; the answer does not echo it (SECURITY.md row 29).
    app.setNotFoundHandler((_request, reply) => sendJsonError(reply, { status: 404, code: 'not_found', message: 'No such endpoint' }))
  },
  { name: 'errors' },
)
