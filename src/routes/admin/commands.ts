/** `/api/v1/admin/commands`: filled in by the command queue. */
import type { FastifyInstance } from 'fastify'

export default async function commandRoutes(_app: FastifyInstance) {}
