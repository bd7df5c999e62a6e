/**
 * SCEP over HTTP (RFC 8894 section 4; PROTOCOL.md section 7): `GET ?operation=GetCACaps`,
 * `GET ?operation=GetCACert`, and `PKIOperation` as a POST body or `GET ?message=<base64>`.
 *
 * A policy refusal is a CertRep FAILURE with status 200 (the service builds it); a message that cannot
 * be decoded, an unknown operation or a malformed query is a 400 with a short text body; the database
 * being away is a 503 so the device retries.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { BadRequestError } from '../../errors.js'
import { errorHandler } from '../../plugins/errors.js'
import { acceptRawBodies } from '../bodies.js'

/** A PKIOperation is a few KiB (a CSR and two certificates); 64 KiB leaves room and bounds the work. */
export const SCEP_BODY_LIMIT = 64 * 1024

/** GET message= carries the same bytes base64-encoded (standard or URL alphabet). */
const MAX_MESSAGE_CHARS = Math.ceil(SCEP_BODY_LIMIT / 3) * 4
const BASE64 = /^[A-Za-z0-9+/\-_]+={0,2}$/

const query = z.object({
  operation: z.string().max(64),
  message: z.string().max(MAX_MESSAGE_CHARS).optional(),
})

export default async function scepRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>()
  // The path of the URL enrollment profiles carry (SERVER_URL may have a path prefix).
  const path = new URL(app.urls.scep).pathname

  // The body is opaque DER whatever the client calls it (scepclient says application/octet-stream,
  // devices application/x-pki-message, some send nothing).
  acceptRawBodies(app, SCEP_BODY_LIMIT)

  app.setErrorHandler(errorHandler({ send: (reply, http) => reply.type('text/plain; charset=utf-8').send(`${http.message}\n`) }))

  app.get(path, { schema: { querystring: query } }, async (request, reply) => {
    const { operation, message } = request.query
    switch (operation) {
      case 'GetCACaps':
        return reply.type('text/plain; charset=utf-8').send(app.services.scep.capabilities())
      case 'GetCACert': {
        const ca = app.services.scep.caCertificate()
        return reply.type(ca.contentType).send(ca.body)
      }
      case 'PKIOperation':
        return pkiOperation(request.log, reply, decodeMessageParameter(message))
      default:
        throw unknownOperation(operation)
    }
  })

  app.post(path, { schema: { querystring: query }, bodyLimit: SCEP_BODY_LIMIT }, async (request, reply) => {
    if (request.query.operation !== 'PKIOperation') throw unknownOperation(request.query.operation)
    const body = request.body
    if (!Buffer.isBuffer(body) || body.length === 0) throw new BadRequestError('PKIOperation needs the pkiMessage as the request body')
    return pkiOperation(request.log, reply, body)
  })

  async function pkiOperation(log: FastifyInstance['log'], reply: FastifyReply, message: Buffer) {
    const result = await app.services.scep.pkiOperation(message)
    log.info({ scep: result.outcome }, result.outcome.status === 'SUCCESS' ? 'SCEP certificate issued' : 'SCEP request refused')
    return reply.type('application/x-pki-message').send(result.body)
  }
}

function decodeMessageParameter(message: string | undefined): Buffer {
  if (!message) throw new BadRequestError('PKIOperation by GET needs a message parameter')
  // A client that did not percent-encode '+' has it turned into a space by the query parser; base64
  // has no spaces, so put it back.
  const text = message.replace(/ /g, '+')
  // Buffer.from(..., 'base64') skips characters it does not know; check the alphabet first.
  if (!BASE64.test(text)) throw new BadRequestError('the message parameter is not base64')
  return Buffer.from(text, 'base64')
}

function unknownOperation(operation: string): BadRequestError {
  return new BadRequestError(`unsupported SCEP operation ${JSON.stringify(operation.slice(0, 64))}`)
}
