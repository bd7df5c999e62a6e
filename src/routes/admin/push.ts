/** `POST /api/v1/admin/enrollments/{id}/push`: filled in by the push service. */
import type { FastifyInstance } from 'fastify'

export default async function pushRoutes(_app: FastifyInstance) {}
