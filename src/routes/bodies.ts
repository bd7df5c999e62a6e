/**
 * Request bodies the protocols need, each parser registered in the scope of the routes that use it:
 *
 * - raw bytes, whatever the Content-Type (enroll CMS, SCEP DER, signed check-in plists): signatures cover
 *   the exact bytes, and devices are not consistent about the Content-Type they send;
 * - `application/x-www-form-urlencoded` (the SAML assertion consumer, the development sign-in, the OAuth 2
 *   token endpoint): fields land in a null-prototype object, and a repeated field is an error rather than
 *   "last one wins": two values for one parameter are how request-smuggling and parameter pollution
 *   attacks start (RFC 6749 section 3.2 forbids repeats outright).
 */
import type { FastifyInstance } from 'fastify'
import { BadRequestError } from '../errors.js'

export interface FormOptions {
  bodyLimit: number
  /** RFC 6749 section 3.2: a parameter sent without a value is treated as omitted. */
  dropEmpty?: boolean
}

export function parseForm(body: string, dropEmpty = false): Record<string, string> {
  const out: Record<string, string> = Object.create(null)
  for (const [name, value] of new URLSearchParams(body)) {
    if (name in out) throw new BadRequestError(`form field ${name} appears more than once`)
    if (!dropEmpty || value !== '') out[name] = value
  }
  return out
}

/**
 * Replaces every body parser in the calling plugin's scope with one that keeps the body as a Buffer, for
 * any Content-Type, up to `bodyLimit` bytes.
 */
export function acceptRawBodies(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body))
}

/** The raw body of a request in a scope with `acceptRawBodies`; empty when none was sent. */
export function rawBody(body: unknown): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.alloc(0)
}

/** Registers the form parser in the calling plugin's scope. */
export function addFormParser(app: FastifyInstance, options: FormOptions): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: options.bodyLimit }, (_request, body, done) => {
    try {
      done(null, parseForm(body as string, options.dropEmpty))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
}
