/**
 * `/api/v1/admin/abm` against the fake ABM: certificate -> token upload (session, account) -> register,
 * fetch and remove the service discovery URL; an expired session renews; a token for another
 * certificate is refused with a clear message. The app listens on a loopback port so that registering
 * can check its own discovery URL over HTTP, as it would through the proxy in production.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSelfSigned, generateRsaKeyPair } from '../../../src/pki/x509.js'
import { ADMIN_TOKEN, admin } from '../../helpers/admin.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { startFakeAbm, type FakeAbm } from '../../helpers/fake-abm.js'
import { freePort } from '../../helpers/ports.js'

let fake: FakeAbm
let t: TestApp
let serverUrl: string

const uploadToken = (file: string, contentType = 'application/pkcs7-mime') =>
  t.app.inject({ method: 'PUT', url: '/api/v1/admin/abm/token', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': contentType }, payload: file })

const audits = (action: string) => t.logs().filter((l) => (l.admin as { action?: string } | undefined)?.action === action)

beforeAll(async () => {
  fake = await startFakeAbm()
  const port = await freePort()
  serverUrl = `http://127.0.0.1:${port}`
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ABM_API_URL: fake.url, SERVER_URL: serverUrl } })
  await t.app.listen({ port, host: '127.0.0.1' })
})
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

describe('the Apple Business Manager connection in the admin API', () => {
  it('starts unconnected, without a certificate', async () => {
    const res = await admin(t.app, 'GET', '/abm')
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ connected: false, certificate: null, server_uuid: null, maid_tokens: false, discovery: null, warning: null })
    const early = await uploadToken('Content-Type: application/pkcs7-mime\n\nAAAA')
    expect(early.statusCode).toBe(409)
    expect(early.json()).toMatchObject({ error: 'abm_certificate_missing' })
    const discovery = await admin(t.app, 'GET', '/abm/discovery')
    expect(discovery.statusCode).toBe(409)
    expect(discovery.json()).toMatchObject({ error: 'abm_not_connected' })
  })

  it('generates the certificate once, stores its key sealed, and serves it as PEM', async () => {
    const first = await admin(t.app, 'GET', '/abm/certificate')
    expect(first.statusCode).toBe(200)
    expect(first.headers['content-type']).toMatch(/^application\/x-pem-file/)
    expect(first.headers['content-disposition']).toMatch(/attachment; filename=".+\.pem"/)
    expect(first.body).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n?$/)
    const again = await admin(t.app, 'GET', '/abm/certificate')
    expect(again.body).toBe(first.body)
    expect(audits('abm.certificate.generate')).toHaveLength(1)
    const row = await t.app.db.prisma.keyMaterial.findUnique({ where: { name: 'abmToken' } })
    expect(row?.certificatePem.trim()).toBe(first.body.trim())
    expect(Buffer.from(row!.keyCiphertext).toString('latin1')).not.toContain('PRIVATE KEY')
    const status = (await admin(t.app, 'GET', '/abm')).json()
    expect(status.certificate).toMatchObject({ subject: expect.stringContaining('Example Corp'), fingerprint_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) })
    fake.uploadCertificate(first.body)
  })

  it('refuses a token encrypted to another certificate, saying so, and stays unconnected', async () => {
    const keys = await generateRsaKeyPair(2048)
    const other = await createSelfSigned({ subject: [['CN', 'another MDM']], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000), keyUsage: ['keyEncipherment'] })
    const res = await uploadToken(fake.serverTokenFile({ certificatePem: other.toString() }))
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'token_not_for_this_server', message: expect.stringMatching(/encrypted to another certificate than this server's ABM certificate/) })
    expect((await admin(t.app, 'GET', '/abm')).json()).toMatchObject({ connected: false })
    expect(fake.requests.filter((r) => r.path === '/session')).toHaveLength(0)
  })

  it('refuses a token Apple does not accept, and one that expired', async () => {
    const refused = await uploadToken(fake.serverTokenFile({ token: { access_token: 'AT_O0000revoked' } }))
    expect(refused.statusCode).toBe(400)
    expect(refused.json()).toMatchObject({ error: 'abm_token_refused', message: expect.stringMatching(/ABM refused the server token \(401/) })
    const expired = await uploadToken(fake.serverTokenFile({ token: { access_token_expiry: '2020-01-01T00:00:00Z' } }))
    expect(expired.statusCode).toBe(400)
    expect(expired.json()).toMatchObject({ error: 'token_expired' })
    expect((await admin(t.app, 'GET', '/abm')).json()).toMatchObject({ connected: false })
  })

  it('uploads the token: decrypted, checked with a session and GET /account, stored sealed', async () => {
    const before = fake.requests.length
    const res = await uploadToken(fake.serverTokenFile())
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body).toMatchObject({
      connected: true,
      server_uuid: fake.account.server_uuid,
      server_name: 'byod-mdm test server',
      organization: { name: 'Example Corp', email: 'it@example.com', phone: '+1 555 0100', address: '1 Infinite Loop, Cupertino', id: '780420', type: 'org' },
      admin_id: 'admin@example.com',
      token_expires_at: new Date(fake.token.access_token_expiry).toISOString(),
      maid_tokens: true,
      discovery: null,
      warning: null,
    })
    expect(body.token_expires_in_days).toBeGreaterThanOrEqual(364)
    expect(fake.requests.slice(before).map((r) => [r.path, r.status])).toEqual([
      ['/session', 200],
      ['/account', 200],
    ])
    expect(audits('abm.token.upload')).toHaveLength(1)
    const row = await t.app.db.prisma.abmConnection.findUniqueOrThrow({ where: { id: 'default' } })
    const stored = Buffer.from(row.tokenCiphertext).toString('latin1')
    for (const secret of [fake.token.access_secret, fake.token.consumer_secret, fake.token.access_token]) expect(stored).not.toContain(secret)
    expect((await admin(t.app, 'GET', '/abm')).json()).toMatchObject({ connected: true, server_uuid: fake.account.server_uuid })
  })

  it('also takes the file as JSON {"token": ...} (as made by openssl smime)', async () => {
    const res = await admin(t.app, 'PUT', '/abm/token', { token: fake.serverTokenFile({ openssl: true }) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ connected: true, server_uuid: fake.account.server_uuid })
  })

  it("registers this server's discovery URL after checking that it answers discovery JSON", async () => {
    const res = await admin(t.app, 'PUT', '/abm/discovery')
    expect(res.statusCode, res.body).toBe(200)
    const expectedUrl = `${serverUrl}/.well-known/com.apple.remotemanagement`
    expect(res.json()).toMatchObject({
      url: expectedUrl,
      check: { user_identifier: 'abm-discovery-check@example.com', status: 200, version: 'mdm-byod', base_url: t.app.urls.enroll(t.app.defaultTeam.enrollmentToken) },
    })
    expect(fake.discovery?.url).toBe(expectedUrl)
    expect(audits('abm.discovery.register')).toHaveLength(1)
    const fetched = await admin(t.app, 'GET', '/abm/discovery')
    expect(fetched.statusCode).toBe(200)
    expect(fetched.json()).toEqual({ url: expectedUrl, last_updated_at: fake.discovery!.updatedAt })
    expect((await admin(t.app, 'GET', '/abm')).json().discovery).toMatchObject({ url: expectedUrl })
  })

  it('registers nothing when the URL does not answer discovery, or is not https', async () => {
    const missing = await admin(t.app, 'PUT', '/abm/discovery', { url: `${serverUrl}/not-discovery` })
    expect(missing.statusCode).toBe(400)
    expect(missing.json()).toMatchObject({ error: 'discovery_check_failed', message: expect.stringMatching(/answered HTTP 404/) })
    const plain = await admin(t.app, 'PUT', '/abm/discovery', { url: 'http://mdm.example.com/.well-known/com.apple.remotemanagement' })
    expect(plain.statusCode).toBe(400)
    expect(plain.json()).toMatchObject({ error: 'invalid_discovery_url' })
    const query = await admin(t.app, 'PUT', '/abm/discovery', { url: `${serverUrl}/.well-known/com.apple.remotemanagement?x=1` })
    expect(query.json()).toMatchObject({ error: 'invalid_discovery_url' })
    expect(fake.discovery?.url).toBe(`${serverUrl}/.well-known/com.apple.remotemanagement`)
  })

  it('renews an expired ABM session by itself', async () => {
    const sessions = fake.sessionsIssued
    fake.expireSessions()
    const res = await admin(t.app, 'GET', '/abm/discovery')
    expect(res.statusCode).toBe(200)
    expect(fake.sessionsIssued).toBe(sessions + 1)
    expect(fake.requests.slice(-3).map((r) => [r.path, r.status])).toEqual([
      ['/account-driven-enrollment/profile', 401],
      ['/session', 200],
      ['/account-driven-enrollment/profile', 200],
    ])
  })

  it('removes the discovery URL from ABM', async () => {
    const res = await admin(t.app, 'DELETE', '/abm/discovery')
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ removed: true, previous_url: `${serverUrl}/.well-known/com.apple.remotemanagement` })
    expect(fake.discovery).toBeNull()
    expect(audits('abm.discovery.remove')).toHaveLength(1)
    const gone = await admin(t.app, 'GET', '/abm/discovery')
    expect(gone.statusCode).toBe(404)
    expect(gone.json()).toMatchObject({ error: 'discovery_not_registered' })
    expect((await admin(t.app, 'GET', '/abm')).json().discovery).toBeNull()
  })

  it('warns ahead of the token expiry, in the admin API and at start', async () => {
    fake.token.access_token_expiry = new Date(Date.now() + 10 * 86_400_000).toISOString()
    const res = await uploadToken(fake.serverTokenFile())
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ token_expires_in_days: 9, warning: expect.stringMatching(/expires on .* \(in 9 days\): in Apple Business Manager, download a new token/) })
    const second = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ABM_API_URL: fake.url }, database: t.database })
    try {
      expect(second.logs().some((l) => l.level === 40 && /Apple Business Manager server token expires on/.test(String(l.msg)))).toBe(true)
    } finally {
      await second.close()
    }
  })

  it('answers 502 abm_unreachable when Apple cannot be reached, and keeps the stored connection', async () => {
    const port = await freePort()
    const down = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ABM_API_URL: `http://127.0.0.1:${port}` }, database: t.database })
    try {
      const res = await down.app.inject({ method: 'PUT', url: '/api/v1/admin/abm/token', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/pkcs7-mime' }, payload: fake.serverTokenFile() })
      expect(res.statusCode).toBe(502)
      expect(res.json()).toMatchObject({ error: 'abm_unreachable', message: expect.stringMatching(/cannot be reached/) })
      expect((await admin(down.app, 'GET', '/abm')).json()).toMatchObject({ connected: true, server_uuid: fake.account.server_uuid })
    } finally {
      await down.close()
    }
  })

  it('documents every endpoint in OpenAPI', async () => {
    const spec = (await t.app.inject('/api/v1/openapi.json')).json() as { paths: Record<string, Record<string, { summary?: string; tags?: string[] }>> }
    expect(spec.paths['/api/v1/admin/abm']?.get?.summary).toBeTruthy()
    expect(spec.paths['/api/v1/admin/abm/certificate']?.get?.summary).toBeTruthy()
    expect(spec.paths['/api/v1/admin/abm/token']?.put?.summary).toBeTruthy()
    for (const method of ['get', 'put', 'delete']) expect(spec.paths['/api/v1/admin/abm/discovery']?.[method]?.tags).toEqual(['abm'])
  })

  it('never logs the server token or the session', () => {
    const all = t.logLines.join('\n')
    for (const secret of [fake.token.consumer_secret, fake.token.access_secret, fake.token.access_token]) expect(all).not.toContain(secret)
    for (const r of fake.requests) if (r.session) expect(all).not.toContain(r.session)
  })
})
