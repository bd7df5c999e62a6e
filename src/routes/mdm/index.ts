/**
 * `PUT /mdm/apple/mdm` (`ServerURL`; there is no separate `CheckInURL`): check-in messages
 * (`application/x-apple-aspen-mdm-checkin`) and the command channel's reports
 * (`application/x-apple-aspen-mdm`). The Content-Type is how a device tells the two apart on a shared
 * URL (PROTOCOL.md section 8); anything else is 415.
 *
 * Every request proves the device first (Mdm-Signature over the exact body bytes, or the proxy's client
 * certificate), then the body is parsed. Status codes: 400 unreadable, 403 identity or binding refused
 * (never 401 for those), 401 + WWW-Authenticate only to ask for a new sign-in, 410 declines a
 * UserAuthenticate, 503 while the database is away. One log line per request names the enrollment and
 * MessageType or Status; never the body, token, PushMagic or push token.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { UnsupportedMediaTypeError } from '../../errors.js'
import { errorHandler, logError, sendJsonError } from '../../plugins/errors.js'
import { channelId, CHECKIN_CONTENT_TYPE, COMMAND_CONTENT_TYPE, parseCheckin, parseCommandReport } from '../../protocol/checkin.js'
import { buildPlist } from '../../protocol/plist.js'
import { UnrecognizedDeviceError, type MdmAnswer } from '../../services/mdm-access.js'
import { acceptRawBodies, rawBody } from '../bodies.js'

/** 1 MiB: check-in messages are under 1 KiB; command results (profile lists, app lists) can be large. */
export const MDM_BODY_LIMIT = 1024 * 1024

const COMMAND_UUID_KEY = Buffer.from('<key>CommandUUID</key>')

/** What the log line for a request says, filled in as the request goes. */
type RequestLog = Record<string, string | undefined>

export default async function mdmRoutes(app: FastifyInstance) {
  const path = new URL(app.urls.mdm).pathname
  const clientCertHeader = app.config.checkin.clientCertHeader
  const logs = new WeakMap<FastifyRequest, RequestLog>()

  // The signature covers the exact bytes, so the body stays a Buffer whatever its Content-Type.
  acceptRawBodies(app, MDM_BODY_LIMIT)

  app.setErrorHandler(
    errorHandler({
      // This route's one line per request (config.ownRequestLog): the request is on it.
      log: (request, err, http) => {
        const mdm = logs.get(request)
        if (!mdm) {
          logError(request, err, http, { req: request })
        } else if (http.status < 500) {
          const e = err as { name?: string; message?: string; code?: unknown }
          request.log.info({ req: request, mdm: { ...mdm, status: String(http.status) }, reason: { type: e?.name, message: e?.message, code: e?.code } }, `${describe(mdm)}: refused`)
        } else {
          // Same levels and messages as logError, with the request's enrollment and message on the line.
          request.log[http.status === 503 ? 'warn' : 'error']({ req: request, err, mdm }, http.status === 503 ? 'dependency unavailable' : 'request failed')
        }
      },
      // Apple's unenroll answer has its own body (services/mdm-access.ts UnrecognizedDeviceError).
      send: (reply, http, _request, err) => (err instanceof UnrecognizedDeviceError ? reply.type('application/json').send({ code: UnrecognizedDeviceError.CODE }) : sendJsonError(reply, http)),
    }),
  )

  app.put(path, { bodyLimit: MDM_BODY_LIMIT, config: { ownRequestLog: true } }, async (request, reply) => {
    const mediaType = request.headers['content-type']?.split(';')[0]!.trim().toLowerCase()
    if (mediaType !== CHECKIN_CONTENT_TYPE && mediaType !== COMMAND_CONTENT_TYPE) {
      throw new UnsupportedMediaTypeError(`Content-Type must be ${CHECKIN_CONTENT_TYPE} or ${COMMAND_CONTENT_TYPE}`)
    }
    const body = rawBody(request.body)
    const log: RequestLog = { channelType: mediaType === CHECKIN_CONTENT_TYPE ? 'check-in' : 'command' }
    logs.set(request, log)

    const service = app.services.checkin
    const authorization = header(request, 'authorization')
    const context = await service.identify({
      mdmSignature: header(request, 'mdm-signature'),
      clientCertificate: clientCertHeader ? header(request, clientCertHeader) : undefined,
      body,
      // A result names its command; an Idle (the same bytes every time) does not.
      once: mediaType === COMMAND_CONTENT_TYPE && body.includes(COMMAND_UUID_KEY),
      authorization,
    })
    const device = context.certificate
    log.certificate = device.id

    let answer: MdmAnswer
    if (mediaType === CHECKIN_CONTENT_TYPE) {
      const message = parseCheckin(body)
      Object.assign(log, { messageType: message.MessageType, channel: channelId(message) })
      answer = await service.checkin({ device, context, message, authorization })
    } else {
      const { report, raw } = parseCommandReport(body)
      Object.assign(log, { reportStatus: report.Status, commandUuid: report.CommandUUID, channel: channelId(report) })
      answer = await app.services.commands.report({ device, context, message: report, raw, authorization })
    }
    return send(request, reply, log, answer)
  })

  /** The request's one line: who and what (the route's `mdm` fields), the request, the status and the time so far. */
  function logLine(request: FastifyRequest, reply: FastifyReply, mdm: RequestLog, message: string) {
    request.log.info({ req: request, res: reply, responseTime: reply.elapsedTime, mdm }, message)
  }

  function send(request: FastifyRequest, reply: FastifyReply, log: RequestLog, answer: MdmAnswer) {
    log.enrollment = answer.enrollment
    switch (answer.kind) {
      case 'reauthenticate':
        logLine(request, reply.code(401), { ...log, reason: answer.reason }, `${describe(log)}: sign-in required`)
        return reply.headers(answer.headers).send()
      case 'gone':
        logLine(request, reply.code(410), log, `${describe(log)}: user not managed`)
        return reply.send()
      case 'ok': {
        const body = answer.body ?? { kind: 'empty', status: 200 }
        logLine(request, reply.code(body.kind === 'empty' ? body.status : 200), { ...log, note: answer.note }, describe(log))
        switch (body.kind) {
          case 'empty':
            return reply.send()
          case 'json':
            return reply.type('application/json').send(JSON.stringify(body.value))
          case 'plist':
            // RFC 7303 prefers application/xml to text/xml; devices read the plist whatever the subtype
            // (a recorded server's text/xml worked as well).
            return reply.type('application/xml; charset=utf-8').send(buildPlist(body.value))
        }
      }
    }
  }
}

function describe(log: RequestLog): string {
  if (log.messageType) return `check-in ${log.messageType}`
  if (log.reportStatus) return `command report ${log.reportStatus}`
  return `${log.channelType} request`
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}
