/**
 * GetToken `com.apple.maid` and `com.apple.mdm.token` with ABM connected (through the admin API, against
 * the fake ABM): profiles issued after connecting offer the capability, those before do not (and a
 * re-issue keeps them as they were); the token is the JWT Apple's "Get Token" page specifies, verifying
 * with the public key of the certificate uploaded to ABM (node:crypto and openssl); only enrollments in
 * good standing get one; unknown service types are 400 as before.
 */
import { X509Certificate, verify } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parsePlistDict } from '../../src/protocol/plist.js'
import { ADMIN_TOKEN, admin } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, type Device } from '../helpers/device.js'
import { payloadOf, postEnroll, signIn, verifyProfile } from '../helpers/enroll.js'
import { startFakeAbm, type FakeAbm } from '../helpers/fake-abm.js'
import { openssl } from '../helpers/openssl.js'
import type { App } from '../../src/app.js'

let fake: FakeAbm
let t: TestApp
let certificatePem: string
/** A device enrolled before ABM was connected. */
let before: Device

async function profileCapabilities(app: App): Promise<unknown> {
  const user = await signIn(app)
  const res = await postEnroll(app, { token: user.token })
  expect(res.statusCode).toBe(200)
  return payloadOf(verifyProfile(app, res.rawPayload), 'com.apple.mdm').ServerCapabilities
}

const getToken = (device: Device, type = 'com.apple.maid', token?: string | null) => device.put(device.message({ MessageType: 'GetToken', TokenServiceType: type }), token === undefined ? {} : { token })

function decodeJwt(jwt: string) {
  const [h, p, s] = jwt.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), claims: JSON.parse(Buffer.from(p!, 'base64url').toString()), input: `${h}.${p}`, signature: Buffer.from(s!, 'base64url') }
}

const enrollmentOf = (app: App, device: Device) => app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })

beforeAll(async () => {
  fake = await startFakeAbm()
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ABM_API_URL: fake.url } })
  before = await activeDevice(t.app)
})
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

describe('GetToken com.apple.maid', () => {
  it('is not served, nor offered in profiles, while ABM is not connected', async () => {
    expect(await profileCapabilities(t.app)).toEqual(['com.apple.mdm.per-user-connections'])
    const res = await getToken(before)
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'unsupported_token_service' })
  })

  it('offers com.apple.mdm.token in profiles issued after connecting, and leaves earlier ones as they were', async () => {
    certificatePem = (await admin(t.app, 'GET', '/abm/certificate')).body
    fake.uploadCertificate(certificatePem)
    const upload = await t.app.inject({ method: 'PUT', url: '/api/v1/admin/abm/token', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/pkcs7-mime' }, payload: fake.serverTokenFile() })
    expect(upload.json()).toMatchObject({ connected: true, maid_tokens: true })

    expect(await profileCapabilities(t.app)).toEqual(['com.apple.mdm.per-user-connections', 'com.apple.mdm.token'])
    const earlier = await enrollmentOf(t.app, before)
    const record = await t.app.db.prisma.enrollmentProfile.findFirstOrThrow({ where: { accessTokenId: earlier.currentAccessTokenId! } })
    expect(record.serverCapabilities).toEqual(['com.apple.mdm.per-user-connections'])
    const reissued = await t.app.services.enrollment.reissue(record.id)
    expect(payloadOf(verifyProfile(t.app, reissued.signed), 'com.apple.mdm').ServerCapabilities).toEqual(['com.apple.mdm.per-user-connections'])
  })

  it("answers {TokenData: <JWT>}: RS256 with the ABM certificate's key, iss = server_uuid, iat, a unique jti, service_type", async () => {
    const device = await activeDevice(t.app)
    const from = Math.floor(Date.now() / 1000)
    const res = await getToken(device)
    const to = Math.ceil(Date.now() / 1000)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/xml/)
    const reply = parsePlistDict(res.body)
    expect(Object.keys(reply)).toEqual(['TokenData'])
    expect(reply.TokenData).toBeInstanceOf(Uint8Array)
    const jwt = Buffer.from(reply.TokenData as Uint8Array).toString('utf8')
    const { header, claims, input, signature } = decodeJwt(jwt)
    expect(header).toEqual({ alg: 'RS256', typ: 'JWT' })
    expect(Object.keys(claims).sort()).toEqual(['iat', 'iss', 'jti', 'service_type'])
    expect(claims.iss).toBe(fake.account.server_uuid)
    expect(claims.service_type).toBe('com.apple.maid')
    expect(claims.iat).toBeGreaterThanOrEqual(from)
    expect(claims.iat).toBeLessThanOrEqual(to)
    expect(claims.jti).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)

    const publicKey = new X509Certificate(certificatePem).publicKey
    expect(verify('sha256', Buffer.from(input), publicKey, signature)).toBe(true)
    // openssl, independently: RSASSA-PKCS1-v1_5 with SHA-256 over header.payload.
    const o = openssl()
    try {
      o.file('cert.pem', certificatePem)
      const pub = o.run(['x509', '-in', 'cert.pem', '-pubkey', '-noout'])
      o.run(['dgst', '-sha256', '-verify', o.file('pub.pem', pub), '-signature', o.file('sig', signature), o.file('input', input)])
    } finally {
      o.close()
    }
    // Tampered claims do not verify.
    const forged = `${Buffer.from(JSON.stringify({ ...claims, iss: 'another' })).toString('base64url')}`
    expect(verify('sha256', Buffer.from(`${input.split('.')[0]}.${forged}`), publicKey, signature)).toBe(false)

    const second = decodeJwt(Buffer.from(parsePlistDict((await getToken(device)).body).TokenData as Uint8Array).toString('utf8'))
    expect(second.claims.jti).not.toBe(claims.jti)
    expect(t.logLines.join('\n')).not.toContain(jwt)
    // One log line names the token by its jti, never the token itself.
    expect(t.logLines.join('\n')).toContain(`com.apple.maid token issued (jti ${claims.jti})`)
  })

  it('answers a Mac device channel that sends no bearer token', async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const res = await getToken(mac, 'com.apple.maid', null)
    expect(res.statusCode, res.body).toBe(200)
    expect(decodeJwt(Buffer.from(parsePlistDict(res.body).TokenData as Uint8Array).toString()).claims.iss).toBe(fake.account.server_uuid)
  })

  it('keeps answering 400 for a service type it does not serve', async () => {
    const device = await activeDevice(t.app)
    const res = await getToken(device, 'com.apple.watch.pairing')
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'unsupported_token_service' })
  })

  it('refuses a revoked user with 403 user_revoked, with or without a token (never 401)', async () => {
    const device = await activeDevice(t.app)
    const mac = await activeDevice(t.app, { mac: true })
    for (const d of [device, mac]) expect((await admin(t.app, 'POST', `/users/${d.user.userId}/revoke`)).statusCode).toBe(200)
    const withToken = await getToken(device)
    expect(withToken.statusCode).toBe(403)
    expect(withToken.json()).toMatchObject({ error: 'user_revoked' })
    const withoutToken = await getToken(mac, 'com.apple.maid', null)
    expect(withoutToken.statusCode).toBe(403)
    expect(withoutToken.json()).toMatchObject({ error: 'user_revoked' })
  })

  it('refuses a removed enrollment with the unenroll answer (403 com.apple.unrecognized.device)', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(t.app, device)
    expect((await admin(t.app, 'DELETE', `/enrollments/${enrollment.id}`)).statusCode).toBe(200)
    const res = await getToken(device)
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ code: 'com.apple.unrecognized.device' })
  })

  it('asks an expired token to sign in again (401 with the challenge), as every check-in message does', async () => {
    const device = await activeDevice(t.app)
    await t.app.db.prisma.accessToken.update({ where: { id: device.user.tokenId }, data: { expiresAt: new Date(Date.now() - 1000) } })
    const res = await getToken(device)
    expect(res.statusCode).toBe(401)
    expect(res.headers['www-authenticate']).toMatch(/^Bearer method="apple-as-web"/)
  })

  it('with MAID_TOKENS=false: neither offered nor served, though ABM stays connected', async () => {
    const off = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ABM_API_URL: fake.url, MAID_TOKENS: 'false' }, database: t.database })
    try {
      expect((await admin(off.app, 'GET', '/abm')).json()).toMatchObject({ connected: true, maid_tokens: false })
      expect(await profileCapabilities(off.app)).toEqual(['com.apple.mdm.per-user-connections'])
      const device = await activeDevice(off.app)
      expect((await getToken(device)).statusCode).toBe(400)
    } finally {
      await off.close()
    }
  })
})
