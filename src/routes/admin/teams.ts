/** `/api/v1/admin/teams`: filled in by the teams resource. */
import type { FastifyInstance } from 'fastify'

export default async function teamRoutes(_app: FastifyInstance) {}
