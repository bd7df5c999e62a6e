/** `/api/v1/admin/users`: filled in by the users resource. */
import type { FastifyInstance } from 'fastify'

export default async function userRoutes(_app: FastifyInstance) {}
