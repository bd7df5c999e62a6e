/**
 * The administration API's front door: ADMIN_API_TOKEN as a bearer, nothing without it, a rate limit,
 * and the OpenAPI document and its interactive docs served from the package.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN } from '../../helpers/admin.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
})
afterAll(async () => t.close())

describe('authentication', () => {
  it('answers 401 without the token, with a wrong one, or with another scheme', async () => {
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${ADMIN_TOKEN}x`, `Basic ${ADMIN_TOKEN}`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`]) {
      const res = await t.app.inject({ url: '/api/v1/admin/enrollments', headers: authorization ? { authorization } : {} })
      expect(res.statusCode, authorization).toBe(401)
      expect(res.json()).toMatchObject({ error: 'unauthorized' })
    }
  })

  it('answers 404 for every admin route while ADMIN_API_TOKEN is unset', async () => {
    const off = await buildTestApp({ database: t.database })
    try {
      for (const url of ['/api/v1/admin/enrollments', '/api/v1/admin/enrollments', '/api/v1/admin/commands']) {
        expect((await off.app.inject({ url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode).toBe(404)
      }
    } finally {
      await off.app.close()
    }
  })

  it('refuses an ADMIN_API_TOKEN shorter than 32 characters at start', async () => {
    await expect(buildTestApp({ env: { ADMIN_API_TOKEN: 'short' }, database: t.database })).rejects.toMatchObject({ variable: 'ADMIN_API_TOKEN' })
  })

  it('is rate limited per client address (ADMIN_RATE_LIMIT)', async () => {
    const limited = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ADMIN_RATE_LIMIT: '3' }, database: t.database })
    try {
      const statuses = []
      // The counters are shared with every app on this database: an address of its own starts at zero.
      const remoteAddress = '198.51.100.23'
      for (let i = 0; i < 5; i++) statuses.push((await limited.app.inject({ url: '/api/v1/admin/enrollments', remoteAddress, headers: { authorization: 'Bearer wrong' } })).statusCode)
      expect(statuses).toEqual([401, 401, 401, 429, 429])
    } finally {
      await limited.app.close()
    }
  })
})

describe('documentation', () => {
  it('serves the OpenAPI 3 document of the admin routes only, and /docs from the package', async () => {
    const doc = await t.app.inject('/api/v1/openapi.json')
    expect(doc.statusCode).toBe(200)
    const spec = doc.json() as { openapi: string; paths: Record<string, unknown> }
    expect(spec.openapi).toMatch(/^3\./)
    expect(Object.keys(spec.paths).every((p) => p.startsWith('/api/v1/admin'))).toBe(true)
    const docs = await t.app.inject('/docs/')
    expect(docs.statusCode).toBe(200)
    expect(docs.body).toContain('swagger')
    // Its assets come from this server, not a CDN.
    expect(docs.body).not.toMatch(/https?:\/\/(cdn|unpkg)/)
    expect((await t.app.inject('/docs/static/swagger-ui-bundle.js')).statusCode).toBe(200)
  })
})
