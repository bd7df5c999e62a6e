/**
 * Liveness and readiness for load balancers and orchestrators.
 * /healthz: the process answers. /readyz: the database answers and every migration this code knows is
 * applied; 503 otherwise, so a load balancer stops sending devices to a process that cannot serve them.
 */
import type { FastifyInstance } from 'fastify'
import { RETRY_AFTER_SECONDS } from '../../plugins/errors.js'
import { appliedMigrationNames } from '../../storage/migrate.js'

export default async function healthRoutes(app: FastifyInstance) {
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (request, reply) => {
    try {
      const applied = await appliedMigrationNames(app.db.prisma)
      const pending = app.migrations.filter((m) => !applied.has(m.name)).map((m) => m.name)
      if (pending.length) {
        return reply.code(503).send({ status: 'migrations_pending', pending })
      }
      return { status: 'ready' }
    } catch (err) {
      request.log.warn({ err }, 'readiness check: database unavailable')
      return reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ status: 'database_unavailable' })
    }
  })
}
