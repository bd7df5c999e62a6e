/**
 * The SSO page and the endpoints around it as HTTP: headers and escaping, the development sign-in,
 * rate limiting (SECURITY.md row 22) and secrets in logs (row 23).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { checkTokenForEnrollment } from '../../../src/services/tokens.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { hasPostgres } from '../../helpers/database.js'
import { createProxiedTestDatabase } from '../../helpers/tcp-proxy.js'
import { createTestIdp, type TestIdp } from '../../helpers/saml-idp.js'
import { counts, expectErrorPage, idpAnswer, postCallback, tokenFrom, tokenRecord } from '../../helpers/sso.js'

// Some tests here start extra app instances (a database, migrations, keys each): slow on a busy machine.
vi.setConfig({ testTimeout: 90_000 })

let idp: TestIdp
let saml: TestApp
let dev: TestApp
beforeAll(async () => {
  idp = await createTestIdp()
  ;[saml, dev] = await Promise.all([buildTestApp({ env: { ...idp.env, ORG_NAME: 'Acme <Corp> & "Sons"' } }), buildTestApp()])
})
afterAll(async () => {
  await saml?.close()
  await dev?.close()
})

function csp(header: unknown): Record<string, string> {
  return Object.fromEntries(String(header).split(';').map((d) => d.trim().split(/\s+(.*)/).slice(0, 2) as [string, string]))
}

describe('the SSO page', () => {
  it('is self-contained HTML under a strict CSP with a fresh nonce, and escapes what it shows', async () => {
    const res = await saml.app.inject(`/mdm/sso?user-identifier=${encodeURIComponent('"><script>alert(1)</script>@example.test')}`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.headers['referrer-policy']).toBe('no-referrer')
    expect(res.headers['x-frame-options']).toBe('DENY')
    const policy = csp(res.headers['content-security-policy'])
    expect(policy['default-src']).toBe("'none'")
    const nonce = /'nonce-([^']+)'/.exec(policy['script-src']!)![1]!
    expect(policy['style-src']).toBe(`'nonce-${nonce}'`)
    expect(policy['connect-src']).toBe(new URL(saml.app.urls.ssoStart).origin)
    expect(policy['frame-ancestors']).toBe("'none'")
    // Every script and style carries the nonce; nothing is loaded from anywhere.
    expect(res.body.match(/<script\b[^>]*>/g)).toEqual([`<script nonce="${nonce}">`])
    expect(res.body.match(/<style\b[^>]*>/g)).toEqual([`<style nonce="${nonce}">`])
    expect(res.body).not.toMatch(/\b(src|href)=/)
    expect(res.body).not.toContain('<script>alert(1)</script>')
    expect(res.body).toContain('&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;@example.test')
    expect(res.body).toContain('Acme &#60;Corp&#62; &#38; &#34;Sons&#34;')
    expect(res.body).toMatch(/sign in twice/)
    expect(res.body).toContain('Managed Apple Account')
    const again = await saml.app.inject('/mdm/sso')
    expect(csp(again.headers['content-security-policy'])['script-src']).not.toBe(policy['script-src'])
  })

  it('answers an unknown team or an unusable identifier with an HTML error page', async () => {
    const before = await counts(saml.app)
    const unknown = await saml.app.inject('/mdm/sso/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')
    expectErrorPage(unknown, 404)
    expect(unknown.body).toContain('enrollment link is not valid')
    expectErrorPage(await saml.app.inject(`/mdm/sso?user-identifier=${'x'.repeat(400)}`), 400)
    expectErrorPage(await saml.app.inject('/mdm/sso?user-identifier=a%00b'), 400)
    expect(await counts(saml.app)).toEqual(before)
  })

  it('serves SP metadata only when an IdP is configured', async () => {
    const res = await dev.app.inject('/api/v1/mdm/sso/metadata')
    expect(res.statusCode).toBe(404)
    expect(res.json()).toMatchObject({ error: 'not_configured' })
  })
})

describe('teams that sign in with OAuth 2', () => {
  it('get no web sign-in: page, start and development sign-in all answer "not available"', async () => {
    const team = await saml.app.db.prisma.team.create({ data: { name: 'OAuth people', enrollmentToken: newEnrollmentToken(), authMethod: 'oauth2' } })
    const before = await counts(saml.app)
    const requests = await saml.app.db.prisma.samlAuthnRequest.count()
    expectErrorPage(await saml.app.inject(`/mdm/sso/${team.enrollmentToken}`), 404)
    const start = await saml.app.inject({ method: 'POST', url: '/api/v1/mdm/sso', payload: { enrollmentToken: team.enrollmentToken } })
    expect(start.statusCode).toBe(404)
    expect(start.json()).toMatchObject({ error: 'not_configured' })
    expect(await saml.app.db.prisma.samlAuthnRequest.count()).toBe(requests)

    const devTeam = await dev.app.db.prisma.team.create({ data: { name: 'OAuth people', enrollmentToken: newEnrollmentToken(), authMethod: 'oauth2' } })
    const devBefore = await counts(dev.app)
    const res = await dev.app.inject({
      method: 'POST',
      url: '/api/v1/mdm/sso/dev',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ enrollmentToken: devTeam.enrollmentToken, email: 'intruder@example.test' }).toString(),
    })
    expectErrorPage(res, 404)
    expect(await counts(saml.app)).toEqual(before)
    expect(await counts(dev.app)).toEqual(devBefore)
  })

  it('need no SAML IdP with AUTH_METHOD=oauth2, and then the page offers nothing', async () => {
    const s = await buildTestApp({
      env: { AUTH_METHOD: 'oauth2', OIDC_ISSUER: 'https://login.example.test/realm', OIDC_CLIENT_ID: 'byod-mdm', OIDC_CLIENT_SECRET: 'secret', ALLOW_DEV_SIGNIN: 'false' },
    })
    try {
      expect(s.config.sso).toMatchObject({ saml: null, devSignIn: false })
      // A team that chose web sign-in itself finds no IdP and no development sign-in either.
      await s.app.db.prisma.team.update({ where: { id: s.app.defaultTeam.id }, data: { authMethod: 'saml' } })
      const page = await s.app.inject('/mdm/sso')
      expectErrorPage(page, 404)
      expect(page.body).toContain('not available')
    } finally {
      await s.close()
    }
  })
})

describe('development sign-in', () => {
  it('is offered, clearly labelled, when no IdP is configured, and mints a dev token for the typed email', async () => {
    const page = await dev.app.inject(`/mdm/sso/${dev.app.defaultTeam.enrollmentToken}?user-identifier=newcomer@example.test`)
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('Development sign-in')
    expect(page.body).toContain(`action="${dev.app.urls.ssoDevSignIn}"`)
    expect(csp(page.headers['content-security-policy'])['form-action']).toBe(`${new URL(dev.app.urls.ssoDevSignIn).origin} apple-remotemanagement-user-login:`)
    const res = await dev.app.inject({
      method: 'POST',
      url: '/api/v1/mdm/sso/dev',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ enrollmentToken: dev.app.defaultTeam.enrollmentToken, userIdentifier: 'newcomer@example.test', email: 'Newcomer@Example.test' }).toString(),
    })
    const record = await tokenRecord(dev.app, tokenFrom(res))
    expect(record.method).toBe('dev')
    expect(record.userIdentifier).toBe('newcomer@example.test')
    expect(record.user).toMatchObject({ issuer: 'dev', subject: 'newcomer@example.test', email: 'Newcomer@Example.test' })
    expect(checkTokenForEnrollment(record, dev.app.defaultTeam.id)).toBeNull()
  })

  it('refuses a deactivated user with a 403 page instead of a token the enroll endpoint would refuse', async () => {
    const fields = { enrollmentToken: dev.app.defaultTeam.enrollmentToken, email: 'gone@example.test' }
    const post = () =>
      dev.app.inject({ method: 'POST', url: '/api/v1/mdm/sso/dev', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(fields).toString() })
    expect((await post()).statusCode).toBe(308)
    await dev.app.db.prisma.user.updateMany({ where: { issuer: 'dev', subject: 'gone@example.test' }, data: { active: false } })
    const tokens = await dev.app.db.prisma.accessToken.count()
    const res = await post()
    expectErrorPage(res, 403)
    expect(res.body).toContain('disabled')
    expect(await dev.app.db.prisma.accessToken.count()).toBe(tokens)
  })

  it('refuses a missing or malformed email, and is not there at all when an IdP is configured', async () => {
    const before = await counts(dev.app)
    const post = (app: TestApp, fields: Record<string, string>) =>
      app.app.inject({ method: 'POST', url: '/api/v1/mdm/sso/dev', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(fields).toString() })
    expectErrorPage(await post(dev, {}), 400)
    expectErrorPage(await post(dev, { email: 'not an email' }), 400)
    expectErrorPage(await post(dev, { email: 'nul\u0000byte@example.test' }), 400)
    expect(await counts(dev.app)).toEqual(before)

    const page = await saml.app.inject('/mdm/sso')
    expect(page.body).not.toContain('Development sign-in')
    const samlBefore = await counts(saml.app)
    expectErrorPage(await post(saml, { email: 'intruder@example.test' }), 404)
    expect(await counts(saml.app)).toEqual(samlBefore)
  })

  it('makes the server refuse to start with a public SERVER_URL and no IdP, in one line', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: new URL('../../../', import.meta.url).pathname,
      env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', SERVER_URL: 'https://mdm.example.com', DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-sso-')) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout!.on('data', (d) => (out += d))
    child.stderr!.on('data', (d) => (out += d))
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code).toBe(1)
    const lines = out.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^configuration error: SAML_IDP_METADATA: no identity provider is configured .* loopback address or ALLOW_DEV_SIGNIN=true$/)
  }, 90_000)
})

describe('rate limiting (row 22)', () => {
  it('answers 429 past SSO_RATE_LIMIT requests a minute from one address, on pages, start and callback', async () => {
    const s = await buildTestApp({ env: { ...idp.env, SSO_RATE_LIMIT: '3' } })
    try {
      const from = (remoteAddress: string) => ({ remoteAddress })
      for (let i = 0; i < 3; i++) expect((await s.app.inject({ url: '/mdm/sso', ...from('203.0.113.7') })).statusCode).toBe(200)
      const page = await s.app.inject({ url: '/mdm/sso', ...from('203.0.113.7') })
      expectErrorPage(page, 429)
      expect(page.body).toContain('Too many sign-in attempts')
      expect(Number(page.headers['retry-after'])).toBeGreaterThan(0)
      const start = await s.app.inject({ method: 'POST', url: '/api/v1/mdm/sso', payload: {}, ...from('203.0.113.7') })
      expect(start.statusCode).toBe(429)
      expect(start.json()).toMatchObject({ error: 'too_many_requests' })
      expectErrorPage(await postCallback(s.app, { SAMLResponse: 'AAAA' }, '203.0.113.7'), 429)
      // Another address is not affected, and other endpoints are not limited by this plugin.
      expect((await s.app.inject({ url: '/mdm/sso', ...from('198.51.100.1') })).statusCode).toBe(200)
      for (let i = 0; i < 5; i++) expect((await s.app.inject({ url: '/healthz', ...from('203.0.113.7') })).statusCode).toBe(200)
    } finally {
      await s.close()
    }
  })
})

describe('secrets in logs (row 23)', () => {
  it('never logs the SAMLResponse, the RelayState or the access token', async () => {
    const { form } = await idpAnswer(saml.app, idp, { userIdentifier: 'alice@example.test' })
    const token = tokenFrom(await postCallback(saml.app, form))
    // A refused response is logged with its reason, still without the secrets.
    const refused = await idpAnswer(saml.app, idp, { userIdentifier: 'alice@example.test' }, { audience: 'https://wrong.example.test' })
    expectErrorPage(await postCallback(saml.app, refused.form), 400)
    const text = saml.logLines.join('\n')
    expect(text).toContain('web sign-in completed')
    expect(text).toContain('audience mismatch')
    for (const secret of [token, form.SAMLResponse, form.RelayState, refused.form.SAMLResponse, refused.form.RelayState]) {
      expect(text).not.toContain(secret)
      expect(text).not.toContain(secret.slice(0, 40))
    }
  })
})

// Cutting the database needs a Postgres server behind a proxy; PGlite runs in-process.
describe.runIf(hasPostgres)('database outage', () => {
  it('answers 503 (page, JSON, callback) while the database is unreachable, and a retried callback then succeeds', async () => {
    const { database, proxy, drop } = await createProxiedTestDatabase()
    const s = await buildTestApp({ env: idp.env, database })
    try {
      expect((await s.app.inject('/mdm/sso')).statusCode).toBe(200)
      const { form } = await idpAnswer(s.app, idp, { userIdentifier: 'alice@example.test' })
      await proxy.cut()
      const page = await s.app.inject('/mdm/sso')
      expectErrorPage(page, 503)
      expect(page.headers['retry-after']).toBe('5')
      const start = await s.app.inject({ method: 'POST', url: '/api/v1/mdm/sso', payload: {} })
      expect(start.statusCode).toBe(503)
      expect(start.json()).toMatchObject({ error: 'service_unavailable' })
      expectErrorPage(await postCallback(s.app, form), 503)
      await proxy.restore()
      expect((await s.app.inject('/mdm/sso')).statusCode).toBe(200)
      // The outage did not spend the request: the browser's retry of the same post succeeds.
      tokenFrom(await postCallback(s.app, form))
    } finally {
      await s.close()
      await drop()
    }
  })
})
