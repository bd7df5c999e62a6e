/** What every admin route shares: the audit log line and the 401. */
import type { FastifyRequest } from 'fastify'
import { AppError } from '../../errors.js'

export class UnauthorizedError extends AppError {
  constructor() {
    super(401, 'unauthorized', 'Authorization: Bearer <ADMIN_API_TOKEN> is required')
  }
}

/** Logs what an administrator changed: one line `admin: <action>` per change, with ids, never secrets. */
export function audit(request: FastifyRequest, action: string, details: Record<string, unknown>): void {
  request.log.info({ admin: { action, ...details } }, `admin: ${action}`)
}
