/**
 * The token endpoint's refusals with a real IdP (oidc-provider): bad, replayed and foreign codes, wrong
 * redirect_uri and client_id, malformed requests, the IdP going away, and the rate limit. Every refusal
 * is an RFC 6749 JSON error with no-store, and mints nothing. Secrets never reach the log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { parseBearerChallenge, postToken, signInAtIdp, type Challenge } from '../../helpers/oauth2-device.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../../helpers/oidc-idp.js'
import { postEnroll } from '../../helpers/enroll.js'
import { oauth2Env, tokenRows } from '../../helpers/oauth2.js'

let idp: TestIdp
let t: TestApp
let challenge: Challenge
const issuedToDevice: string[] = []

beforeAll(async () => {
  idp = await startTestIdp()
  idp.accounts.set('erin-sub', { sub: 'erin-sub', password: 'pa55word', email: 'erin@example.com', name: 'Erin' })
  // The rate limit has its own test; this file sends more than the default allows per minute.
  t = await buildTestApp({ env: oauth2Env(idp, { OAUTH2_RATE_LIMIT: '1000' }) })
  challenge = parseBearerChallenge((await postEnroll(t.app)).headers['www-authenticate'] as string)
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

const code = async () => (await signInAtIdp(challenge, { login: 'erin@example.com', password: 'pa55word' })).code
const redeem = (params: Record<string, string>, tokenUrl = challenge['token-url']!) =>
  postToken(t.app, tokenUrl, { grant_type: 'authorization_code', redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId, ...params })

async function expectError(res: Awaited<ReturnType<typeof redeem>>, status: number, error: string) {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.headers['content-type']).toMatch(/^application\/json/)
  expect(res.headers['cache-control']).toBe('no-store')
  expect(res.headers.pragma).toBe('no-cache')
  const body = res.json() as Record<string, unknown>
  expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
  expect(body.error).toBe(error)
}

describe('token URLs', () => {
  it('serves the Default team on the plain /api/v1/mdm/oauth2/token path too (PROTOCOL.md section 0)', async () => {
    const plain = challenge['token-url']!.replace(/\/[^/]+$/, '')
    expect(plain).toBe('https://mdm.example.test/api/v1/mdm/oauth2/token')
    const res = await redeem({ code: await code() }, plain)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ token_type: 'Bearer' })
    const body = res.json() as { access_token: string; refresh_token: string }
    issuedToDevice.push(body.access_token, body.refresh_token)
  })
})

describe('authorization_code refusals', () => {
  it('a code the IdP never issued: invalid_grant, nothing minted', async () => {
    const before = await tokenRows(t.app)
    await expectError(await redeem({ code: 'made-up-code' }), 400, 'invalid_grant')
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('a replayed code: the first redemption works, the second is invalid_grant and mints nothing', async () => {
    const c = await code()
    const first = await redeem({ code: c })
    expect(first.statusCode, first.body).toBe(200)
    issuedToDevice.push(first.json().access_token, first.json().refresh_token)
    const before = await tokenRows(t.app)
    await expectError(await redeem({ code: c }), 400, 'invalid_grant')
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('a wrong redirect_uri: invalid_grant without asking the IdP, and the code stays usable', async () => {
    const c = await code()
    const before = await tokenRows(t.app)
    const requests = idp.tokenRequests
    for (const redirect of ['https://attacker.example/cb', `${APPLE_REDIRECT_URI}/`, 'apple-remotemanagement-user-login://oauth2/redirection']) {
      await expectError(await redeem({ code: c, redirect_uri: redirect }), 400, 'invalid_grant')
    }
    expect(idp.tokenRequests).toBe(requests)
    expect(await tokenRows(t.app)).toEqual(before)
    const ok = await redeem({ code: c })
    expect(ok.statusCode).toBe(200)
    issuedToDevice.push(ok.json().access_token, ok.json().refresh_token)
  })

  it('a wrong or missing client_id: invalid_client (400, never a 401 a device could take for unenroll) or invalid_request, without asking the IdP', async () => {
    const c = await code()
    const requests = idp.tokenRequests
    const before = await tokenRows(t.app)
    await expectError(await redeem({ code: c, client_id: 'someone-else' }), 400, 'invalid_client')
    await expectError(await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code: c, redirect_uri: APPLE_REDIRECT_URI }), 400, 'invalid_request')
    expect(idp.tokenRequests).toBe(requests)
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('missing code or redirect_uri, unknown or missing grant_type: invalid_request / unsupported_grant_type', async () => {
    const before = await tokenRows(t.app)
    await expectError(await redeem({ code: '' }), 400, 'invalid_request')
    await expectError(await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code: 'x', client_id: idp.clientId }), 400, 'invalid_request')
    await expectError(await redeem({ grant_type: 'password', code: 'x' }), 400, 'unsupported_grant_type')
    await expectError(await redeem({ grant_type: 'client_credentials' }), 400, 'unsupported_grant_type')
    await expectError(await postToken(t.app, challenge['token-url']!, { code: 'x', client_id: idp.clientId }), 400, 'invalid_request')
    await expectError(await redeem({ grant_type: 'refresh_token' }), 400, 'invalid_request')
    await expectError(await redeem({ grant_type: 'refresh_token', refresh_token: 'not-ours' }), 400, 'invalid_grant')
    await expectError(await redeem({ code: 'x'.repeat(5000) }), 400, 'invalid_request')
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('an unknown team URL, and a team that signs in with SAML, mint nothing', async () => {
    const before = await tokenRows(t.app)
    await expectError(await redeem({ code: 'x' }, t.app.urls.oauth2Token(newEnrollmentToken())), 400, 'invalid_request')
    await expectError(await redeem({ code: 'x' }, t.app.urls.oauth2Token('../../etc')), 400, 'invalid_request')
    const saml = await t.app.db.prisma.team.create({ data: { name: 'SAML team', enrollmentToken: newEnrollmentToken(), authMethod: 'saml' } })
    await expectError(await redeem({ code: await code() }, t.app.urls.oauth2Token(saml.enrollmentToken)), 400, 'unauthorized_client')
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('a refresh token presented at another team URL is invalid_grant', async () => {
    const ok = await redeem({ code: await code() })
    const other = await t.app.db.prisma.team.create({ data: { name: 'Other OAuth team', enrollmentToken: newEnrollmentToken(), authMethod: 'oauth2' } })
    const before = await tokenRows(t.app)
    const res = await postToken(t.app, t.app.urls.oauth2Token(other.enrollmentToken), { grant_type: 'refresh_token', refresh_token: ok.json().refresh_token, client_id: idp.clientId })
    await expectError(res, 400, 'invalid_grant')
    expect(await tokenRows(t.app)).toEqual(before)
  })
})

describe('request shape', () => {
  const raw = (payload: string, headers: Record<string, string>) => t.app.inject({ method: 'POST', url: new URL(challenge['token-url']!).pathname, headers, payload })

  it('only takes form bodies: JSON, text and no Content-Type are invalid_request', async () => {
    const params = JSON.stringify({ grant_type: 'authorization_code', code: 'x', redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId })
    await expectError(await raw(params, { 'content-type': 'application/json' }), 400, 'invalid_request')
    await expectError(await raw('grant_type=authorization_code', { 'content-type': 'text/plain' }), 400, 'invalid_request')
    await expectError(await raw('', {}), 400, 'invalid_request')
  })

  it('refuses a parameter given twice (RFC 6749 section 3.2)', async () => {
    const res = await raw(`grant_type=authorization_code&code=a&code=b&redirect_uri=${encodeURIComponent(APPLE_REDIRECT_URI)}&client_id=${idp.clientId}`, { 'content-type': 'application/x-www-form-urlencoded' })
    await expectError(res, 400, 'invalid_request')
    expect(res.json().error_description).toMatch(/code/)
  })

  it('refuses bodies over the limit (413) and compressed bodies (415), as JSON errors', async () => {
    const big = await raw(`grant_type=authorization_code&code=${'x'.repeat(20_000)}`, { 'content-type': 'application/x-www-form-urlencoded' })
    await expectError(big, 413, 'invalid_request')
    const gz = await raw('grant_type=x', { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' })
    await expectError(gz, 415, 'invalid_request')
  })

  it('does not serve GET', async () => {
    const res = await t.app.inject({ method: 'GET', url: new URL(challenge['token-url']!).pathname })
    expect(res.statusCode).toBe(404)
  })
})

describe('the IdP going away', () => {
  it('token endpoint: 503 temporarily_unavailable with Retry-After while the IdP is down, nothing minted; works again after', async () => {
    const c = await code()
    await idp.down()
    try {
      const before = await tokenRows(t.app)
      const res = await redeem({ code: c })
      await expectError(res, 503, 'temporarily_unavailable')
      expect(res.headers['retry-after']).toBe('5')
      expect(await tokenRows(t.app)).toEqual(before)
    } finally {
      await idp.up()
    }
    const ok = await redeem({ code: c })
    expect(ok.statusCode, ok.body).toBe(200)
    issuedToDevice.push(ok.json().access_token, ok.json().refresh_token)
  })

  it('refresh: 503 while the IdP is down, and the same refresh token still works afterwards', async () => {
    const first = await redeem({ code: await code() })
    const refreshToken = first.json().refresh_token as string
    await idp.down()
    try {
      const before = await tokenRows(t.app)
      const res = await redeem({ grant_type: 'refresh_token', refresh_token: refreshToken })
      await expectError(res, 503, 'temporarily_unavailable')
      expect(await tokenRows(t.app)).toEqual(before)
    } finally {
      await idp.up()
    }
    const again = await redeem({ grant_type: 'refresh_token', refresh_token: refreshToken })
    expect(again.statusCode, again.body).toBe(200)
    issuedToDevice.push(again.json().access_token, again.json().refresh_token)
  })
})

describe('logs', () => {
  it('never contain a code, our tokens, the IdP tokens or the client secret', async () => {
    expect(issuedToDevice.length).toBeGreaterThan(4)
    const secrets = [...issuedToDevice, ...idp.issued.codes, ...idp.issued.accessTokens, ...idp.issued.refreshTokens, idp.clientSecret]
    expect(idp.issued.codes.length).toBeGreaterThan(3)
    expect(idp.issued.refreshTokens.length).toBeGreaterThan(3)
    const log = t.logLines.join('\n')
    for (const secret of secrets) expect(log).not.toContain(secret)
    // The log does say what happened.
    expect(t.logs().some((l) => l.msg === 'oauth2: tokens issued')).toBe(true)
  })
})
