/**
 * The server's own identities (SCEP CA, profile signer) as a named plugin: given by the administrator or
 * generated once and stored encrypted in the database (services/keys.ts). Decorates `app.keys`.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { loadServerKeys, type ServerKeys } from '../services/keys.js'

declare module 'fastify' {
  interface FastifyInstance {
    keys: ServerKeys
  }
}

export default fp(
  async (app: FastifyInstance) => {
    app.decorate('keys', await loadServerKeys(app.db.prisma, app.config, app.log))
  },
  { name: 'keys', dependencies: ['database'] },
)
