/**
 * The enroll 401 per team: the team's own method wins over AUTH_METHOD, in both directions, with the
 * exact header; an unreachable IdP gives 503 (the device retries), never a broken challenge. Also the
 * token endpoint's rate limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { postToken } from '../../helpers/oauth2-device.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../../helpers/oidc-idp.js'
import { postEnroll, writtenRows } from '../../helpers/enroll.js'
import { oauth2Env, tokenRows, TOPIC } from '../../helpers/oauth2.js'

/** Each test builds its own server (PGlite and key generation): give it room on a busy machine. */
const BUILDS_AN_APP = 120_000

let idp: TestIdp
const apps: TestApp[] = []
async function app(env: Record<string, string>) {
  const t = await buildTestApp({ env })
  apps.push(t)
  return t
}

beforeAll(async () => {
  idp = await startTestIdp()
})
afterAll(async () => {
  for (const t of apps) await t.close()
  await idp?.close()
})

const asWeb = (teamToken: string) => `Bearer method="apple-as-web", url="https://mdm.example.test/mdm/sso/${teamToken}"`
const oauth2 = (teamToken: string) =>
  `Bearer method="apple-oauth2", authorization-url="${idp.issuer}/auth", token-url="https://mdm.example.test/api/v1/mdm/oauth2/token/${teamToken}", redirect-url="${APPLE_REDIRECT_URI}", client-id="${idp.clientId}", scope="openid email profile"`

describe('the sign-in method per team', () => {
  it('AUTH_METHOD=saml with an OIDC provider configured: apple-as-web by default, apple-oauth2 for a team set to oauth2', async () => {
    const { AUTH_METHOD: _, ...env } = oauth2Env(idp)
    const t = await app(env)
    expect(t.config.authMethod).toBe('saml')
    const res = await postEnroll(t.app)
    expect(res.statusCode).toBe(401)
    expect(res.headers['www-authenticate']).toBe(asWeb(t.app.defaultTeam.enrollmentToken))

    const team = await t.app.db.prisma.team.create({ data: { name: 'OAuth team', enrollmentToken: newEnrollmentToken(), authMethod: 'oauth2' } })
    const viaTeam = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${team.enrollmentToken}` })
    expect(viaTeam.statusCode).toBe(401)
    expect(viaTeam.headers['www-authenticate']).toBe(oauth2(team.enrollmentToken))
  }, BUILDS_AN_APP)

  it('AUTH_METHOD=oauth2: apple-oauth2 by default, apple-as-web for a team set to saml', async () => {
    const t = await app(oauth2Env(idp))
    expect((await postEnroll(t.app)).headers['www-authenticate']).toBe(oauth2(t.app.defaultTeam.enrollmentToken))
    const team = await t.app.db.prisma.team.create({ data: { name: 'SAML team', enrollmentToken: newEnrollmentToken(), authMethod: 'saml' } })
    const viaTeam = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${team.enrollmentToken}` })
    expect(viaTeam.statusCode).toBe(401)
    expect(viaTeam.headers['www-authenticate']).toBe(asWeb(team.enrollmentToken))
  }, BUILDS_AN_APP)

  it('a team set to oauth2 on a server without an OIDC provider: 500, the log names OIDC_ISSUER', async () => {
    const t = await app({ APNS_TOPIC: TOPIC })
    const team = await t.app.db.prisma.team.create({ data: { name: 'Misconfigured', enrollmentToken: newEnrollmentToken(), authMethod: 'oauth2' } })
    const res = await postEnroll(t.app, { path: `/api/mdm/apple/enroll/${team.enrollmentToken}` })
    expect(res.statusCode).toBe(500)
    expect(res.headers['www-authenticate']).toBeUndefined()
    expect(res.json()).toEqual({ error: 'sign_in_not_configured', message: 'Internal server error' })
    expect(t.logLines.some((l) => l.includes('OIDC_ISSUER'))).toBe(true)
  }, BUILDS_AN_APP)
})

describe('an unreachable IdP', () => {
  it('enroll answers 503 with Retry-After until discovery succeeds, then the challenge; a cached discovery outlives an outage', async () => {
    const t = await app(oauth2Env(idp))
    const before = await writtenRows(t.app)
    await idp.down()
    try {
      const res = await postEnroll(t.app)
      expect(res.statusCode).toBe(503)
      expect(res.headers['retry-after']).toBe('5')
      expect(res.headers['www-authenticate']).toBeUndefined()
      expect(res.json()).toMatchObject({ error: 'service_unavailable' })
      expect(t.logs().some((l) => l.msg === 'dependency unavailable' && JSON.stringify(l).includes('cannot reach the IdP'))).toBe(true)
    } finally {
      await idp.up()
    }
    const ok = await postEnroll(t.app)
    expect(ok.statusCode).toBe(401)
    expect(ok.headers['www-authenticate']).toBe(oauth2(t.app.defaultTeam.enrollmentToken))
    await idp.down()
    try {
      expect((await postEnroll(t.app)).headers['www-authenticate']).toBe(oauth2(t.app.defaultTeam.enrollmentToken))
    } finally {
      await idp.up()
    }
    expect(await writtenRows(t.app)).toEqual(before)
  }, BUILDS_AN_APP)
})

describe('rate limit', () => {
  it('answers 429 as an OAuth error once a client exceeds OAUTH2_RATE_LIMIT per minute, minting nothing', async () => {
    const t = await app(oauth2Env(idp, { OAUTH2_RATE_LIMIT: '3' }))
    const url = t.app.urls.oauth2Token(t.app.defaultTeam.enrollmentToken)
    const before = await tokenRows(t.app)
    const guess = (i: number) => postToken(t.app, url, { grant_type: 'authorization_code', code: `guess-${i}`, redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId })
    for (let i = 0; i < 3; i++) expect((await guess(i)).statusCode).toBe(400)
    const limited = await guess(3)
    expect(limited.statusCode).toBe(429)
    expect(limited.json()).toEqual({ error: 'temporarily_unavailable', error_description: expect.stringMatching(/Too many requests/) })
    expect(limited.headers['retry-after']).toBeDefined()
    expect(limited.headers['cache-control']).toBe('no-store')
    expect(await tokenRows(t.app)).toEqual(before)
  }, BUILDS_AN_APP)
})
