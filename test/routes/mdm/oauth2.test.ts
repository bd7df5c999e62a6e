/**
 * Check-in for a team that signs in with `apple-oauth2`, against a real OpenID provider: the device's
 * access tokens expire and are refreshed at our token endpoint; a refreshed token continues the same
 * enrollment, an expired one gets the `apple-oauth2` challenge (so the device refreshes), and a revoked
 * grant stops them all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../../src/pki/secrets.js'
import { postEnroll } from '../../helpers/enroll.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { enrollDevice } from '../../helpers/device.js'
import { parseBearerChallenge, postToken, signInAtIdp, type Challenge } from '../../helpers/oauth2-device.js'
import { startTestIdp, type TestIdp } from '../../helpers/oidc-idp.js'
import { oauth2Env } from '../../helpers/oauth2.js'

let idp: TestIdp
let t: TestApp
let header: string
let challenge: Challenge

beforeAll(async () => {
  idp = await startTestIdp()
  idp.accounts.set('carol-sub', { sub: 'carol-sub', password: 'pw-carol', email: 'carol@example.com', name: 'Carol' })
  t = await buildTestApp({ env: oauth2Env(idp) })
  const res = await postEnroll(t.app)
  header = res.headers['www-authenticate'] as string
  challenge = parseBearerChallenge(header)
}, 90_000)
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

type Tokens = { access_token: string; refresh_token: string }

async function signIn(): Promise<Tokens> {
  const { code } = await signInAtIdp(challenge, { login: 'carol@example.com', password: 'pw-carol' })
  const res = await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code, redirect_uri: challenge['redirect-url']!, client_id: challenge['client-id']! })
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as Tokens
}

async function refresh(refreshToken: string) {
  return postToken(t.app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: challenge['client-id']! })
}

const record = (token: string) => t.app.db.prisma.accessToken.findUniqueOrThrow({ where: { tokenHash: hashSecret(token) } })

describe('check-in with OAuth 2 tokens', () => {
  it('a refreshed token continues the enrollment; an expired one gets the apple-oauth2 challenge', async () => {
    const first = await signIn()
    const issued = await record(first.access_token)
    const device = await enrollDevice(t.app, { user: { token: first.access_token, tokenId: issued.id, userId: issued.userId } })
    for (const res of [await device.authenticate(), await device.tokenUpdate(), await device.idle()]) expect(res.statusCode, res.body).toBe(200)

    const refreshed = await refresh(first.refresh_token)
    expect(refreshed.statusCode, refreshed.body).toBe(200)
    const second = refreshed.json() as Tokens
    device.token = second.access_token
    expect((await device.idle()).statusCode).toBe(200)
    const enrollment = await t.app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment.accessTokenId).toBe(issued.id)
    expect(enrollment.currentAccessTokenId).toBe((await record(second.access_token)).id)
    // A refresh is not a new sign-in: the clock of REAUTH_AFTER still runs from the sign-in at the IdP.
    const grant = await t.app.db.prisma.oAuth2Grant.findUniqueOrThrow({ where: { id: issued.oauth2GrantId! } })
    expect(enrollment.signedInAt.getTime()).toBe(grant.createdAt.getTime())

    // The access token's own lifetime ends: the device is told to refresh, with the same challenge.
    await t.app.db.prisma.accessToken.update({ where: { id: (await record(second.access_token)).id }, data: { expiresAt: new Date(Date.now() - 1000) } })
    const expired = await device.idle()
    expect(expired.statusCode).toBe(401)
    expect(expired.headers['www-authenticate']).toBe(header)
    expect(parseBearerChallenge(expired.headers['www-authenticate'] as string).method).toBe('apple-oauth2')
  })

  it('a revoked grant (refresh token replayed) stops every token of it on check-in; CheckOut still 200', async () => {
    const first = await signIn()
    const issued = await record(first.access_token)
    const device = await enrollDevice(t.app, { user: { token: first.access_token, tokenId: issued.id, userId: issued.userId } })
    expect((await device.authenticate()).statusCode).toBe(200)
    expect((await device.tokenUpdate()).statusCode).toBe(200)
    const second = (await refresh(first.refresh_token)).json() as Tokens
    // Someone replays the used refresh token: the whole grant is revoked.
    expect((await refresh(first.refresh_token)).statusCode).toBe(400)
    for (const token of [first.access_token, second.access_token]) {
      const res = await device.idle({ token })
      expect(res.statusCode).toBe(401)
      expect(res.headers['www-authenticate']).toBe(header)
    }
    expect((await device.checkOut()).statusCode).toBe(200)
    const logs = t.logLines.join('\n')
    for (const secret of [first.access_token, first.refresh_token, second.access_token, second.refresh_token]) expect(logs).not.toContain(secret)
  })
})
