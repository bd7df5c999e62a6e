/**
 * `GET`/`HEAD /.well-known/com.apple.remotemanagement` (PROTOCOL.md section 1). Always JSON with
 * `Cache-Control: no-store`: a cached answer or an HTML error page breaks enrollment for that user.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { WellKnownFailure } from '../../protocol/discovery.js'

export default async function wellKnownRoute(app: FastifyInstance) {
  await app.services.discovery.prepare()

  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  // Fastify answers HEAD from this GET route (exposeHeadRoutes) with the same headers and no body.
  app.get('/.well-known/com.apple.remotemanagement', async (request, reply) => {
    const query = request.query as Record<string, unknown>
    try {
      const { response, team } = await app.services.discovery.discover({ userIdentifier: query['user-identifier'], modelFamily: query['model-family'] })
      request.log.info({ teamId: team.id }, 'service discovery answered')
      return sendJson(reply, 200, response)
    } catch (err) {
      if (!(err instanceof WellKnownFailure)) throw err
      request.log.info({ reason: err.body.description }, 'service discovery refused')
      return sendJson(reply, 403, err.body)
    }
  })
}

/** Exactly `application/json`, as Apple documents it (a string body would get `; charset=utf-8` added). */
function sendJson(reply: FastifyReply, status: number, body: object): FastifyReply {
  return reply.code(status).type('application/json').send(Buffer.from(JSON.stringify(body), 'utf8'))
}
