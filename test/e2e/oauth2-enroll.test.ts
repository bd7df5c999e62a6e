/**
 * The whole `apple-oauth2` enrollment against a real OpenID provider (oidc-provider on 127.0.0.1): the
 * enroll 401, the device's sign-in at the IdP, the code at our token endpoint, the profile with our
 * access token; then refresh, rotation and reuse detection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SecretBox } from '../../src/pki/secretbox.js'
import { openIdpRefreshToken } from '../../src/services/oauth2-grants.js'
import { hashSecret } from '../../src/pki/secrets.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { parseBearerChallenge, postToken, signInAtIdp, type Challenge } from '../helpers/oauth2-device.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../helpers/oidc-idp.js'
import { payloadOf, postEnroll, verifyProfile } from '../helpers/enroll.js'
import { oauth2Env, tokenRows } from '../helpers/oauth2.js'

let idp: TestIdp
let t: TestApp
let challenge: Challenge

beforeAll(async () => {
  idp = await startTestIdp()
  idp.accounts.set('alice-sub', { sub: 'alice-sub', password: 'correct horse', email: 'alice@example.com', name: 'Alice Example', groups: ['staff', 'byod'] })
  idp.accounts.set('bob-sub', { sub: 'bob-sub', password: 'battery staple', email: 'bob@example.com', name: 'Bob' })
  t = await buildTestApp({ env: oauth2Env(idp) })
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

async function signIn(login = 'alice@example.com', password = 'correct horse') {
  const res = await postEnroll(t.app)
  expect(res.statusCode).toBe(401)
  challenge = parseBearerChallenge(res.headers['www-authenticate'] as string)
  const { code } = await signInAtIdp(challenge, { login, password })
  const token = await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code, redirect_uri: challenge['redirect-url']!, client_id: challenge['client-id']! })
  expect(token.statusCode, token.body).toBe(200)
  return token.json() as { token_type: string; access_token: string; expires_in: number; refresh_token: string }
}

const refresh = (refreshToken: string) =>
  postToken(t.app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: idp.clientId })

describe('apple-oauth2 enrollment with a real OpenID provider', () => {
  it('challenges with exactly the apple-oauth2 header built from the IdP discovery and the team token URL', async () => {
    const res = await postEnroll(t.app)
    expect(res.statusCode).toBe(401)
    expect(res.body).toBe('')
    expect(res.headers['www-authenticate']).toBe(
      `Bearer method="apple-oauth2", authorization-url="${idp.issuer}/auth", token-url="https://mdm.example.test/api/v1/mdm/oauth2/token/${t.app.defaultTeam.enrollmentToken}", redirect-url="${APPLE_REDIRECT_URI}", client-id="${idp.clientId}", scope="openid email profile"`,
    )
  })

  it('signs the user in at the IdP, redeems the code, and the access token fetches one signed profile', async () => {
    const res = await postEnroll(t.app)
    challenge = parseBearerChallenge(res.headers['www-authenticate'] as string)
    const signIn = await signInAtIdp(challenge, { login: 'alice@example.com', password: 'correct horse' })
    // The IdP saw Apple's login_hint and sent the browser to the custom-scheme redirect with our state.
    expect(signIn.prefilledLogin).toBe('alice@example.com')
    expect(signIn.redirect.startsWith(`${APPLE_REDIRECT_URI}?code=`)).toBe(true)

    const before = await tokenRows(t.app)
    const token = await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code: signIn.code, redirect_uri: APPLE_REDIRECT_URI, client_id: idp.clientId })
    expect(token.statusCode, token.body).toBe(200)
    expect(token.headers['content-type']).toMatch(/^application\/json/)
    expect(token.headers['cache-control']).toBe('no-store')
    expect(token.headers.pragma).toBe('no-cache')
    const body = token.json() as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'])
    expect(body.token_type).toBe('Bearer')
    // RFC 6749 section 5.1: the scope granted, as Apple's example token response carries it.
    expect(body.scope).toBe(challenge.scope)
    expect(body.expires_in).toBe(3600)
    expect(body.access_token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    // None of the IdP's own tokens reach the device.
    for (const secret of [...idp.issued.accessTokens, ...idp.issued.refreshTokens]) expect(token.body).not.toContain(secret)
    expect(await tokenRows(t.app)).toEqual({ ...before, users: before.users + 1, accessTokens: before.accessTokens + 1, grants: before.grants + 1, refreshTokens: before.refreshTokens + 1 })

    // The user as the IdP described them: email and groups came from userinfo (not in this IdP's ID token).
    const user = await t.app.db.prisma.user.findUniqueOrThrow({ where: { issuer_subject: { issuer: idp.issuer, subject: 'alice-sub' } } })
    expect(user).toMatchObject({ email: 'alice@example.com', displayName: 'Alice Example', groups: ['staff', 'byod'], active: true })

    const profile = await postEnroll(t.app, { token: body.access_token as string })
    expect(profile.statusCode).toBe(200)
    expect(profile.headers['content-type']).toBe('application/x-apple-aspen-config')
    const mdm = payloadOf(verifyProfile(t.app, profile.rawPayload), 'com.apple.mdm')
    expect(mdm.AssignedManagedAppleID).toBe('alice@example.com')
    // One profile per sign-in.
    expect((await postEnroll(t.app, { token: body.access_token as string })).statusCode).toBe(401)
  })

  it('refreshes without client_id (RFC 6749 section 6: the device need not send it); a wrong one is invalid_client 400', async () => {
    const first = await signIn()
    const before = await tokenRows(t.app)
    const wrong = await postToken(t.app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: 'someone-else' })
    expect(wrong.statusCode).toBe(400)
    expect(wrong.json()).toMatchObject({ error: 'invalid_client' })
    expect(await tokenRows(t.app)).toEqual(before)
    const res = await postToken(t.app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: first.refresh_token })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ token_type: 'Bearer', scope: challenge.scope })
    expect(res.json().access_token).not.toBe(first.access_token)
  })

  it('stores the IdP refresh token sealed, never in clear', async () => {
    await signIn()
    const grant = await t.app.db.prisma.oAuth2Grant.findFirstOrThrow({ orderBy: { createdAt: 'desc' } })
    const rows = JSON.stringify(await t.app.db.prisma.$queryRawUnsafe('SELECT * FROM oauth2_grants'), (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v))
    const idpToken = openIdpRefreshToken(new SecretBox(t.config.serverSecret), grant)
    expect(idp.issued.refreshTokens).toContain(idpToken)
    expect(rows).not.toContain(idpToken)
  })

  it('refreshes once per refresh token, rotating ours and the IdP one, and a refreshed token cannot fetch a profile', async () => {
    const first = await signIn()
    const before = await tokenRows(t.app)
    const idpRequests = idp.tokenRequests
    const res = await refresh(first.refresh_token)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    const second = res.json() as typeof first
    expect(second.token_type).toBe('Bearer')
    expect(second.access_token).not.toBe(first.access_token)
    expect(second.refresh_token).not.toBe(first.refresh_token)
    // The IdP was asked whether it still accepts the session.
    expect(idp.tokenRequests).toBe(idpRequests + 1)
    expect(await tokenRows(t.app)).toEqual({ ...before, accessTokens: before.accessTokens + 1, refreshTokens: before.refreshTokens + 1 })

    // The refreshed access token continues the same grant and names the token it replaced.
    const prisma = t.app.db.prisma
    const [a, b] = await Promise.all(
      [first.access_token, second.access_token].map((tok) => prisma.accessToken.findFirstOrThrow({ where: { tokenHash: hashSecret(tok) } })),
    )
    expect(b!.oauth2GrantId).toBe(a!.oauth2GrantId)
    expect(b!.refreshedFromId).toBe(a!.id)
    expect(b!.enrollUntil.getTime()).toBe(b!.createdAt.getTime())

    // The refreshed token cannot fetch a profile, not even the first one.
    expect((await postEnroll(t.app, { token: second.access_token })).statusCode).toBe(401)
    expect(await prisma.enrollmentProfile.count({ where: { accessTokenId: b!.id } })).toBe(0)

    // The IdP rotated its refresh token and we kept the new one: a second refresh still works there.
    const third = await refresh(second.refresh_token)
    expect(third.statusCode, third.body).toBe(200)
  })

  it('treats a replayed refresh token as stolen: invalid_grant, and the whole grant is revoked', async () => {
    const first = await signIn()
    const second = (await refresh(first.refresh_token)).json() as typeof first
    const before = await tokenRows(t.app)
    const replay = await refresh(first.refresh_token)
    expect(replay.statusCode).toBe(400)
    expect(replay.json()).toEqual({ error: 'invalid_grant', error_description: expect.any(String) })
    expect(await tokenRows(t.app)).toEqual(before)
    // The current refresh token of that family is dead too, and so are its access tokens.
    const after = await refresh(second.refresh_token)
    expect(after.statusCode).toBe(400)
    expect(after.json().error).toBe('invalid_grant')
    const grantId = (await t.app.db.prisma.accessToken.findFirstOrThrow({ where: { tokenHash: hashSecret(second.access_token) } })).oauth2GrantId
    const tokens = await t.app.db.prisma.accessToken.findMany({ where: { oauth2GrantId: grantId } })
    expect(tokens).toHaveLength(2)
    expect(tokens.every((tok) => tok.revokedAt !== null)).toBe(true)
    const grant = await t.app.db.prisma.oAuth2Grant.findUniqueOrThrow({ where: { id: grantId! } })
    expect(grant.revokedReason).toBe('refresh_token_reuse')
    expect(t.logs().some((l) => l.level === 40 && l.msg === 'oauth2: possible token theft' && JSON.stringify(l).includes(grantId!))).toBe(true)
  })

  it('refuses an expired refresh token, minting nothing', async () => {
    const first = await signIn()
    await t.app.db.prisma.oAuth2RefreshToken.update({ where: { tokenHash: hashSecret(first.refresh_token) }, data: { expiresAt: new Date(Date.now() - 1000) } })
    const before = await tokenRows(t.app)
    const res = await refresh(first.refresh_token)
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toBe('invalid_grant')
    expect(await tokenRows(t.app)).toEqual(before)
  })

  it('the same refresh token twice at once: at most one new token, and the grant ends revoked with no live token', async () => {
    const first = await signIn()
    const results = await Promise.all([refresh(first.refresh_token), refresh(first.refresh_token)])
    expect(results.filter((r) => r.statusCode === 200).length).toBeLessThanOrEqual(1)
    for (const r of results.filter((r) => r.statusCode !== 200)) expect(r.json().error).toBe('invalid_grant')
    const prisma = t.app.db.prisma
    const { oauth2GrantId } = await prisma.accessToken.findFirstOrThrow({ where: { tokenHash: hashSecret(first.access_token) } })
    expect((await prisma.oAuth2Grant.findUniqueOrThrow({ where: { id: oauth2GrantId! } })).revokedReason).toBe('refresh_token_reuse')
    expect(await prisma.accessToken.count({ where: { oauth2GrantId, revokedAt: null } })).toBe(0)
  })

  it('refuses to refresh for a deactivated user, minting nothing', async () => {
    const first = await signIn('bob@example.com', 'battery staple')
    await t.app.db.prisma.user.updateMany({ where: { subject: 'bob-sub' }, data: { active: false } })
    const before = await tokenRows(t.app)
    const res = await refresh(first.refresh_token)
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toBe('invalid_grant')
    expect(await tokenRows(t.app)).toEqual(before)
    await t.app.db.prisma.user.updateMany({ where: { subject: 'bob-sub' }, data: { active: true } })
  })

  it('refuses to refresh once the IdP no longer accepts the session, and revokes the grant', async () => {
    const first = await signIn('bob@example.com', 'battery staple')
    idp.accounts.get('bob-sub')!.disabled = true
    try {
      const before = await tokenRows(t.app)
      const res = await refresh(first.refresh_token)
      expect(res.statusCode).toBe(400)
      expect(res.json().error).toBe('invalid_grant')
      expect(await tokenRows(t.app)).toEqual(before)
      const grant = await t.app.db.prisma.oAuth2Grant.findFirstOrThrow({ where: { revokedReason: 'idp_refused' } })
      expect(grant.revokedAt).not.toBeNull()
    } finally {
      idp.accounts.get('bob-sub')!.disabled = false
    }
  })
})
