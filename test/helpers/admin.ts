/** The admin API as a test calls it: the bearer token, JSON in and out. */
import type { App } from '../../src/app.js'

export const ADMIN_TOKEN = 'admin-token-0123456789abcdef0123456789abcdef'

export function admin(app: App, method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown) {
  return app.inject({
    method,
    url: `/api/v1/admin${url}`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  })
}
