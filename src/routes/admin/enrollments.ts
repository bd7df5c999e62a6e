/** `/api/v1/admin/enrollments`: filled in by the command queue. */
import type { FastifyInstance } from 'fastify'

export default async function enrollmentRoutes(_app: FastifyInstance) {}
