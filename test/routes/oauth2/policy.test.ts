/**
 * SSO_TEAM_GROUPS applies to OAuth 2 sign-ins too: at code redemption and again at every refresh (with
 * the IdP's fresh claims), so leaving the group ends the grant. A refresh must not erase what the IdP
 * only sends through userinfo (email, name, groups).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { parseBearerChallenge, postToken, signInAtIdp } from '../../helpers/oauth2-device.js'
import { startTestIdp, type TestIdp } from '../../helpers/oidc-idp.js'
import { postEnroll } from '../../helpers/enroll.js'
import { oauth2Env, tokenRows } from '../../helpers/oauth2.js'

let idp: TestIdp
let t: TestApp

beforeAll(async () => {
  idp = await startTestIdp()
  idp.accounts.set('carol-sub', { sub: 'carol-sub', password: 'pw-carol', email: 'carol@example.com', name: 'Carol', groups: ['staff', 'byod'] })
  idp.accounts.set('dave-sub', { sub: 'dave-sub', password: 'pw-dave', email: 'dave@example.com', name: 'Dave', groups: ['contractors'] })
  t = await buildTestApp({ env: oauth2Env(idp, { SSO_TEAM_GROUPS: JSON.stringify({ Default: ['byod'] }) }) })
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

async function redeem(login: string, password: string) {
  const challenge = parseBearerChallenge((await postEnroll(t.app)).headers['www-authenticate'] as string)
  const { code } = await signInAtIdp(challenge, { login, password })
  const res = await postToken(t.app, challenge['token-url']!, { grant_type: 'authorization_code', code, redirect_uri: challenge['redirect-url']!, client_id: challenge['client-id']! })
  return { challenge, res }
}

describe('sign-in policy on the OAuth 2 token endpoint', () => {
  it('refuses a user outside the team groups with invalid_grant and mints nothing', async () => {
    const before = await tokenRows(t.app)
    const { res } = await redeem('dave@example.com', 'pw-dave')
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'invalid_grant' })
    const after = await tokenRows(t.app)
    expect({ ...after, users: before.users }).toEqual(before)
    expect(t.logLines.join('\n')).toContain('SSO_TEAM_GROUPS')
  })

  it('admits a group member, keeps their email on refresh, and ends the grant once they leave the group', async () => {
    const { challenge, res } = await redeem('carol@example.com', 'pw-carol')
    expect(res.statusCode, res.body).toBe(200)
    const first = res.json() as { refresh_token: string }
    const refresh = (refreshToken: string) => postToken(t.app, challenge['token-url']!, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: idp.clientId })

    const second = await refresh(first.refresh_token)
    expect(second.statusCode, second.body).toBe(200)
    const user = await t.app.db.prisma.user.findFirstOrThrow({ where: { subject: 'carol-sub' } })
    // The refreshed ID token carries no email/name/groups (oidc-provider puts them in userinfo).
    expect(user).toMatchObject({ email: 'carol@example.com', displayName: 'Carol', groups: ['staff', 'byod'] })

    idp.accounts.get('carol-sub')!.groups = ['staff']
    const third = await refresh((second.json() as { refresh_token: string }).refresh_token)
    expect(third.statusCode).toBe(400)
    expect(third.json()).toMatchObject({ error: 'invalid_grant' })
    const grant = await t.app.db.prisma.oAuth2Grant.findFirstOrThrow({ where: { userId: user.id } })
    expect(grant.revokedReason).toBe('group_not_allowed')
    expect(await t.app.db.prisma.accessToken.count({ where: { oauth2GrantId: grant.id, revokedAt: null } })).toBe(0)
  })
})
