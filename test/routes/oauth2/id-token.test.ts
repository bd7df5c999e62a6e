/**
 * SECURITY.md row 16: the token endpoint refuses every ID token it must not trust, with an RFC 6749
 * error and nothing minted. The IdP here is a small issuer whose token endpoint returns ID tokens the
 * test crafts; a well-formed one is accepted, so each refusal is down to the one thing that is wrong.
 */
import { generateKeyPairSync } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { APPLE_OAUTH2_REDIRECT_URL } from '../../../src/config/index.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { startFakeIssuer, type FakeIssuer, type TokenAnswer } from '../../helpers/fake-oidc-issuer.js'
import { postToken } from '../../helpers/oauth2-device.js'
import { oauth2Env, tokenRows } from '../../helpers/oauth2.js'

let fake: FakeIssuer
let t: TestApp
let tokenUrl: string

beforeAll(async () => {
  // The issuer advertises HS256 and none too: the refusal must not depend on what the IdP claims to use.
  fake = await startFakeIssuer({ algs: ['RS256', 'HS256', 'none'] })
  t = await buildTestApp({ env: oauth2Env(fake) })
  tokenUrl = t.app.urls.oauth2Token(t.app.defaultTeam.enrollmentToken)
})
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

const redeem = (answer: TokenAnswer) =>
  postToken(t.app, tokenUrl, { grant_type: 'authorization_code', code: fake.issueCode(answer), redirect_uri: APPLE_OAUTH2_REDIRECT_URL, client_id: fake.clientId })

/** The answer is refused with `error`, nothing is minted, and the log says `reason`. */
async function expectRefused(answer: TokenAnswer, reason: RegExp, status = 400, error = 'invalid_grant') {
  const before = await tokenRows(t.app)
  const res = await redeem(answer)
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json()).toEqual({ error, error_description: expect.any(String) })
  expect(res.headers['cache-control']).toBe('no-store')
  expect(await tokenRows(t.app)).toEqual(before)
  expect(lastReason()).toMatch(reason)
  return res
}

/** Why the last token request was refused, from the log line the error handler wrote. */
function lastReason(): string {
  const line = t.logs().findLast((l) => l.msg === 'request rejected' || l.msg === 'request failed' || l.msg === 'dependency unavailable')
  const reason = (line?.reason ?? line?.err) as { message?: string } | undefined
  return reason?.message ?? ''
}

describe('ID token validation', () => {
  it('accepts a well-formed RS256 ID token and reads email, name and groups from it (no userinfo endpoint)', async () => {
    const before = await tokenRows(t.app)
    const res = await redeem(fake.ok(fake.signIdToken(fake.baseClaims())))
    expect(res.statusCode, res.body).toBe(200)
    expect(await tokenRows(t.app)).toMatchObject({ accessTokens: before.accessTokens + 1, grants: before.grants + 1 })
    const user = await t.app.db.prisma.user.findUniqueOrThrow({ where: { issuer_subject: { issuer: fake.issuer, subject: 'carol-sub' } } })
    expect(user).toMatchObject({ email: 'carol@example.com', displayName: 'Carol', groups: ['staff'] })
    // The server authenticated itself at the IdP with its secret, and sent the device's redirect_uri.
    expect(fake.requests.at(-1)).toMatchObject({ grantType: 'authorization_code', redirectUri: APPLE_OAUTH2_REDIRECT_URL, authenticated: true })
  })

  it('refuses a wrong issuer', async () => {
    await expectRefused(fake.ok(fake.signIdToken({ ...fake.baseClaims(), iss: 'https://evil.example.test' })), /"iss" \(issuer\)/)
  })

  it('refuses a wrong audience, and an audience list without us', async () => {
    await expectRefused(fake.ok(fake.signIdToken({ ...fake.baseClaims(), aud: 'another-client' })), /"aud" \(audience\)/)
    await expectRefused(fake.ok(fake.signIdToken({ ...fake.baseClaims(), aud: ['another-client', 'a-third'] })), /"aud" \(audience\)/)
  })

  it('refuses an expired ID token', async () => {
    const now = Math.floor(Date.now() / 1000)
    await expectRefused(fake.ok(fake.signIdToken({ ...fake.baseClaims(), iat: now - 7200, exp: now - 3600 })), /"exp" \(expiration time\)/)
  })

  it('refuses an unsigned ID token (alg none)', async () => {
    await expectRefused(fake.ok(fake.signIdToken(fake.baseClaims(), { alg: 'none' })), /unsupported JWS "alg"/)
  })

  it('refuses an HS256 ID token, even one keyed with our own client secret', async () => {
    await expectRefused(fake.ok(fake.signIdToken(fake.baseClaims(), { alg: 'HS256' })), /unsupported JWS algorithm/)
  })

  it('refuses an ID token signed by a key that is not in the IdP JWKS', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    await expectRefused(fake.ok(fake.signIdToken(fake.baseClaims(), { key: privateKey })), /signature verification failed/)
  })

  it('refuses a response without an ID token, a malformed one, and claims missing sub', async () => {
    await expectRefused(fake.ok(undefined), /id_token/)
    await expectRefused(fake.ok('not.a.jwt'), /JWT Header/)
    const { sub: _sub, ...noSub } = fake.baseClaims()
    await expectRefused(fake.ok(fake.signIdToken(noSub)), /"sub" \(subject\) claim missing/)
  })

  it('refuses an ID token carrying a nonce (the device sends none, so none may come back)', async () => {
    await expectRefused(fake.ok(fake.signIdToken({ ...fake.baseClaims(), nonce: 'injected' })), /"nonce"/)
  })

  it('ignores an email the IdP marks unverified', async () => {
    const res = await redeem(fake.ok(fake.signIdToken({ ...fake.baseClaims(), sub: 'dave-sub', email: 'ceo@example.com', email_verified: false })))
    expect(res.statusCode).toBe(200)
    const user = await t.app.db.prisma.user.findUniqueOrThrow({ where: { issuer_subject: { issuer: fake.issuer, subject: 'dave-sub' } } })
    expect(user.email).toBeNull()
  })
})

describe('IdP errors at the token endpoint', () => {
  it('passes the IdP refusing the code on as invalid_grant', async () => {
    await expectRefused({ status: 400, body: { error: 'invalid_grant', error_description: 'code expired' } }, /IdP answered 400 invalid_grant/)
  })

  it('answers 503 temporarily_unavailable when the IdP fails with 5xx, with Retry-After', async () => {
    const res = await expectRefused({ status: 500, body: 'oops' }, /HTTP 500/, 503, 'temporarily_unavailable')
    expect(res.headers['retry-after']).toBe('5')
    await expectRefused({ status: 503, body: { error: 'temporarily_unavailable' } }, /HTTP 503|temporarily_unavailable/, 503, 'temporarily_unavailable')
  })

  it('answers 502 server_error when the IdP refuses our client credentials (a configuration problem)', async () => {
    await expectRefused({ status: 401, body: { error: 'invalid_client' } }, /invalid_client.*OIDC_CLIENT_SECRET/, 502, 'server_error')
  })

  it('answers 502 server_error too when the refusal is a WWW-Authenticate challenge (RFC 6749 section 5.2, as oidc-provider answers)', async () => {
    const challenge = { 'www-authenticate': 'Basic realm="idp", error="invalid_client", error_description="client authentication failed"' }
    await expectRefused({ status: 401, headers: challenge, body: { error: 'invalid_client' } }, /401 invalid_client.*OIDC_CLIENT_SECRET/, 502, 'server_error')
  })

  it('answers invalid_grant for a token response that is not a token response', async () => {
    await expectRefused({ status: 200, body: { token_type: 'Bearer' } }, /access_token/)
  })
})
