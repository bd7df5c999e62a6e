/**
 * pino options shared by the server and tests. Secrets must never reach a log line: bearer tokens,
 * Mdm-Signature, cookies, SCEP challenges, SAML responses, OAuth codes. Request logs carry the URL with
 * secret-bearing query values replaced, and any logged object has its secret-named keys censored.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { LoggerOptions } from 'pino'

const CENSOR = '[redacted]'

/** Object keys whose values are censored wherever they appear in a logged object (case-insensitive). */
const SECRET_KEYS = [
  'authorization',
  'mdm-signature',
  'cookie',
  'set-cookie',
  'accesstoken',
  'access_token',
  'access-token',
  'refreshtoken',
  'refresh_token',
  'idtoken',
  'id_token',
  'token',
  'challenge',
  'password',
  'secret',
  'clientsecret',
  'client_secret',
  'samlresponse',
  'samlrequest',
  'relaystate',
  'privatekey',
  'keypem',
  'serversecret',
  'pushmagic',
  'unlocktoken',
]
const SECRET_KEY_SET = new Set(SECRET_KEYS)

/** Query parameters whose values are replaced in logged URLs. */
const SECRET_QUERY = /([?&](?:access[-_]token|refresh_token|id_token|token|code|SAMLResponse|SAMLRequest|RelayState|Signature|message|challenge)=)[^&#]*/gi

export function redactUrl(url: string): string {
  return url.replace(SECRET_QUERY, `$1${CENSOR}`)
}

/** Recursively censors secret-named keys. Objects are copied, not changed. */
export function scrub(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== 'object') return value
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `<${value.length} bytes>`
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1))
  // Only plain objects are copied: class instances (requests, errors) have their own serializers, and
  // copying them would lose their prototype getters.
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEY_SET.has(k.toLowerCase()) ? CENSOR : scrub(v, depth + 1)
  }
  return out
}

export function loggerOptions(level: LoggerOptions['level']): LoggerOptions {
  return {
    level,
    // No `redact` paths: pino applies them after the serializers below, which log no headers, so they
    // censored nothing and cost every line a clone (issue 15). `formatters.log` censors secret-named keys
    // at any depth.
    formatters: {
      log: (obj) => scrub(obj) as Record<string, unknown>,
    },
    serializers: {
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        remoteAddress: req.ip,
        userAgent: req.headers['user-agent'],
      }),
      res: (res: FastifyReply) => ({ statusCode: res.statusCode }),
      err: (err: Error & { code?: unknown; statusCode?: unknown }) => ({
        type: err.name,
        message: err.message,
        code: err.code,
        statusCode: err.statusCode,
        stack: err.stack,
        cause: err.cause instanceof Error ? { type: err.cause.name, message: err.cause.message, code: (err.cause as { code?: unknown }).code } : undefined,
      }),
    },
  }
}
