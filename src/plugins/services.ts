/**
 * The use cases as a named plugin: creates the Default team on first start, then every service
 * (services/index.ts). Decorates `app.services`, `app.urls` and `app.defaultTeam`; closes the push
 * service (its APNs connection) when the app closes.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { serverUrls, type ServerUrls } from '../protocol/urls.js'
import { createServices, type Services } from '../services/index.js'
import { ensureDefaultTeam } from '../storage/teams.js'
import type { Team } from '../storage/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    urls: ServerUrls
    services: Services
    defaultTeam: Team
  }
}

export default fp(
  async (app: FastifyInstance) => {
    const urls = serverUrls(app.config.serverUrl)
    app.decorate('urls', urls)
    app.decorate('defaultTeam', await ensureDefaultTeam(app.db.prisma))
    app.decorate('services', createServices({ db: app.db.prisma, config: app.config, keys: app.keys, urls, log: app.log }))
    // Before the database closes (onClose hooks run in reverse order of registration): pushes in flight
    // record their outcome, then the APNs connection ends.
    app.addHook('onClose', async () => app.services.push.close())
  },
  { name: 'services', dependencies: ['database', 'keys'] },
)
