/**
 * SECURITY.md row 22: the rate limits of the SSO pages, the token endpoint, discovery, enroll and the
 * admin API hold for the deployment, not per process. Two app instances on one database (two server
 * processes behind a load balancer) share the counters: requests alternate between them and the one
 * past the limit is 429 on either. A database outage answers 503 (fail closed, like every other request
 * that needs the database), never 200 past the limit and never 429 for the outage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, buildTestAppPair, type TestApp, type TestAppPair } from '../helpers/app.js'
import { hasPostgres } from '../helpers/database.js'
import { recordFigures } from '../helpers/figures.js'
import { oauth2Env } from '../helpers/oauth2.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../helpers/oidc-idp.js'
import { createProxiedTestDatabase } from '../helpers/tcp-proxy.js'

const LIMIT = 4
const limits = { ENROLL_RATE_LIMIT: String(LIMIT), SSO_RATE_LIMIT: String(LIMIT), ADMIN_RATE_LIMIT: String(LIMIT), OAUTH2_RATE_LIMIT: String(LIMIT), ADMIN_API_TOKEN: ADMIN_TOKEN }

type Send = (app: App, remoteAddress: string) => Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }>

const discovery: Send = (app, remoteAddress) => app.inject({ url: '/.well-known/com.apple.remotemanagement?user-identifier=alice%40example.com&model-family=iPhone', remoteAddress })
const enroll: Send = (app, remoteAddress) =>
  app.inject({ method: 'POST', url: '/api/mdm/apple/enroll', remoteAddress, headers: { 'content-type': 'application/pkcs7-signature' }, payload: Buffer.from('not a profile request') })
const ssoPage: Send = (app, remoteAddress) => app.inject({ url: '/mdm/sso', remoteAddress })
const adminGuess: Send = (app, remoteAddress) => app.inject({ url: '/api/v1/admin/enrollments', remoteAddress, headers: { authorization: 'Bearer a-guessed-token-0123456789abcdef0123456789' } })

let pair: TestAppPair
let a: TestApp
let b: TestApp
let idp: TestIdp
let oauthPair: TestAppPair
let oa: TestApp
let ob: TestApp

beforeAll(async () => {
  pair = await buildTestAppPair(limits)
  ;({ a, b } = pair)
  idp = await startTestIdp()
  oauthPair = await buildTestAppPair(oauth2Env(idp, limits))
  ;({ a: oa, b: ob } = oauthPair)
}, 120_000)

afterAll(async () => {
  await Promise.all([pair?.close(), oauthPair?.close()])
  await idp?.close()
})

async function alternate(pair: [App, App], send: Send, remoteAddress: string) {
  const statuses: number[] = []
  const retryAfter: unknown[] = []
  for (let i = 0; i < LIMIT + 2; i++) {
    const res = await send(pair[i % 2]!, remoteAddress)
    statuses.push(res.statusCode)
    if (res.statusCode === 429) retryAfter.push(res.headers['retry-after'])
  }
  return { statuses, retryAfter }
}

describe('one limit for all processes on one database', () => {
  it.each([
    ['discovery', discovery, 200],
    ['enroll', enroll, 400],
    ['SSO page', ssoPage, 200],
    ['admin API', adminGuess, 401],
  ] as const)('%s: the request past the limit is 429 on either instance', async (name, send, expected) => {
    const address = `203.0.113.${Math.floor(Math.random() * 200) + 1}`
    const { statuses, retryAfter } = await alternate([a.app, b.app], send, address)
    // Each instance saw at most LIMIT/2 + 1 requests: a per-process limit would have let every one through.
    expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(expected))
    expect(statuses.slice(LIMIT)).toEqual([429, 429])
    for (const r of retryAfter) expect(Number(r)).toBeGreaterThan(0)
    // Another client is not affected on either instance.
    expect((await send(b.app, '198.51.100.77')).statusCode).not.toBe(429)
    recordFigures(`rate limit on 2 instances: ${name}`, { inputs: LIMIT + 2, accepted: statuses.filter((s) => s !== 429).length, refused: statuses.filter((s) => s === 429).length, limit: LIMIT })
  })

  it('token endpoint: the request past the limit is an OAuth 429 on either instance, minting nothing', async () => {
    const remoteAddress = '203.0.113.250'
    const statuses: number[] = []
    for (let i = 0; i < LIMIT + 2; i++) {
      const app = (i % 2 ? ob : oa).app
      const res = await app.inject({
        method: 'POST',
        url: app.urls.oauth2Token(app.defaultTeam.enrollmentToken),
        remoteAddress,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ grant_type: 'authorization_code', code: `guess-${i}`, redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId }).toString(),
      })
      statuses.push(res.statusCode)
      if (res.statusCode === 429) expect(res.json().error).toBe('temporarily_unavailable')
    }
    expect(statuses).toEqual([...Array(LIMIT).fill(400), 429, 429])
    expect(await oa.app.db.prisma.accessToken.count()).toBe(0)
    recordFigures('rate limit on 2 instances: token endpoint', { inputs: LIMIT + 2, accepted: LIMIT, refused: 2, limit: LIMIT })
  })

  it('groups count on their own, and a window that ended starts again at one', async () => {
    const address = '192.0.2.44'
    for (let i = 0; i < LIMIT; i++) expect((await discovery(a.app, address)).statusCode).toBe(200)
    expect((await discovery(b.app, address)).statusCode).toBe(429)
    // The same client is not limited on enroll by its discovery requests.
    expect((await enroll(b.app, address)).statusCode).toBe(400)
    // The window ends (moved into the past rather than waiting a minute): the next request is allowed again.
    await a.app.db.prisma.rateLimit.updateMany({ where: { key: `discovery:${address}` }, data: { windowStart: new Date(Date.now() - 120_000), windowEnd: new Date(Date.now() - 60_000) } })
    expect((await discovery(b.app, address)).statusCode).toBe(200)
    const row = await a.app.db.prisma.rateLimit.findUniqueOrThrow({ where: { key: `discovery:${address}` } })
    expect(row.hits).toBe(1)
    expect(row.windowEnd.getTime() - row.windowStart.getTime()).toBe(60_000)
  })

  it('concurrent requests from one client: exactly the limit gets through', async () => {
    const address = '192.0.2.99'
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => discovery((i % 2 ? b : a).app, address)))
    const statuses = results.map((r) => r.statusCode)
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT)
    expect(statuses.filter((s) => s === 429)).toHaveLength(12 - LIMIT)
    recordFigures('rate limit on 2 instances: concurrent burst', { inputs: 12, accepted: LIMIT, refused: 12 - LIMIT, limit: LIMIT, '5xx': statuses.filter((s) => s >= 500).length })
  })
})

// Cutting the database needs a Postgres server behind a proxy; PGlite runs in-process.
describe.runIf(hasPostgres)('the database is away', () => {
  it('limited endpoints answer 503 + Retry-After (fail closed), and count again once it is back', async () => {
    const { database: proxied, proxy, drop } = await createProxiedTestDatabase()
    let t: TestApp | undefined
    try {
      t = await buildTestApp({ env: limits, database: proxied })
      const address = '203.0.113.201'
      expect((await discovery(t.app, address)).statusCode).toBe(200)
      await proxy.cut()
      for (const send of [discovery, enroll, ssoPage, adminGuess]) {
        for (let i = 0; i < LIMIT + 1; i++) {
          const res = await send(t.app, address)
          expect(res.statusCode, res.body).toBe(503)
          expect(res.headers['retry-after']).toBeDefined()
        }
      }
      await proxy.restore()
      // Counting resumes where it was: one discovery request before the outage, none during it.
      const after = []
      for (let i = 0; i < LIMIT; i++) after.push((await discovery(t.app, address)).statusCode)
      expect(after).toEqual([200, 200, 200, 429])
    } finally {
      await t?.close()
      await drop()
    }
  }, 90_000)
})
