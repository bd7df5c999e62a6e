import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newEnrollmentToken } from '../../src/storage/teams.js'
import { bearerToken, checkTokenForEnrollment, findAccessToken, mintAccessToken, upsertUser } from '../../src/services/tokens.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(async () => t.close())

describe('access tokens', () => {
  it('are random, stored only as a hash, and found again by the token', async () => {
    const prisma = t.app.db.prisma
    const user = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: 'alice', email: 'alice@example.test', displayName: 'Alice' })
    const a = await mintAccessToken(prisma, { userId: user.id, teamId: t.app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
    const b = await mintAccessToken(prisma, { userId: user.id, teamId: t.app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(a.token).not.toBe(b.token)
    const rows = await prisma.$queryRawUnsafe<Record<string, unknown>[]>('SELECT * FROM access_tokens')
    expect(JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).not.toContain(a.token)
    const found = await findAccessToken(prisma, a.token)
    expect(found?.id).toBe(a.record.id)
    expect(found?.user.email).toBe('alice@example.test')
    expect(checkTokenForEnrollment(found, t.app.defaultTeam.id)).toBeNull()
    expect(await findAccessToken(prisma, `${a.token}x`)).toBeNull()
    expect(await findAccessToken(prisma, '')).toBeNull()
  })

  it('refuse to start an enrollment when revoked, expired, of another team or of an inactive user', async () => {
    const prisma = t.app.db.prisma
    const user = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: 'bob' })
    const other = await prisma.team.create({ data: { name: 'Other', enrollmentToken: newEnrollmentToken() } })
    const teamId = t.app.defaultTeam.id
    const mint = (windowSeconds = 3600) => mintAccessToken(prisma, { userId: user.id, teamId, method: 'oauth2', windowSeconds })

    const expired = await mint(-1)
    expect(checkTokenForEnrollment(await findAccessToken(prisma, expired.token), teamId)).toBe('enrollment_window_over')

    const revoked = await mint()
    await prisma.accessToken.update({ where: { id: revoked.record.id }, data: { revokedAt: new Date() } })
    expect(checkTokenForEnrollment(await findAccessToken(prisma, revoked.token), teamId)).toBe('revoked')

    const good = await mint()
    expect(checkTokenForEnrollment(await findAccessToken(prisma, good.token), other.id)).toBe('other_team')
    await prisma.user.update({ where: { id: user.id }, data: { active: false } })
    expect(checkTokenForEnrollment(await findAccessToken(prisma, good.token), teamId)).toBe('user_inactive')
    expect(checkTokenForEnrollment(null, teamId)).toBe('unknown')
  })

  it('refuse an OAuth 2 token past its lifetime, and a refreshed token, to start an enrollment', async () => {
    const prisma = t.app.db.prisma
    const user = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: 'dora' })
    const teamId = t.app.defaultTeam.id
    const expired = await mintAccessToken(prisma, { userId: user.id, teamId, method: 'oauth2', windowSeconds: 3600, lifetimeSeconds: -1 })
    expect(checkTokenForEnrollment(await findAccessToken(prisma, expired.token), teamId)).toBe('expired')
    const live = await mintAccessToken(prisma, { userId: user.id, teamId, method: 'oauth2', windowSeconds: 3600, lifetimeSeconds: 3600 })
    expect(checkTokenForEnrollment(await findAccessToken(prisma, live.token), teamId)).toBeNull()
    // Even with a window left open, a token that continues another one does not start an enrollment.
    const refreshed = await mintAccessToken(prisma, { userId: user.id, teamId, method: 'oauth2', windowSeconds: 3600, lifetimeSeconds: 3600, refreshedFromId: live.record.id })
    expect(checkTokenForEnrollment(await findAccessToken(prisma, refreshed.token), teamId)).toBe('refreshed')
  })

  it('upsertUser refuses IdP values with control characters (400) and writes nothing', async () => {
    const prisma = t.app.db.prisma
    const before = await prisma.user.count()
    for (const claims of [
      { issuer: 'https://idp.example.test', subject: 'nul\u0000subject' },
      { issuer: 'https://idp.example.test', subject: 'eve', email: 'eve\u0000@example.test' },
      { issuer: 'https://idp.example.test', subject: 'eve', groups: ['ok', 'bad\u0001'] },
    ]) {
      await expect(upsertUser(prisma, claims)).rejects.toMatchObject({ status: 400, code: 'invalid_identity' })
    }
    expect(await prisma.user.count()).toBe(before)
  })

  it('upsertUser keeps one row per issuer and subject', async () => {
    const prisma = t.app.db.prisma
    const a = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: 'carol', email: 'old@example.test' })
    const b = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: 'carol', email: 'new@example.test', groups: ['staff'] })
    expect(b.id).toBe(a.id)
    expect(b.email).toBe('new@example.test')
    expect(b.groups).toEqual(['staff'])
  })
})

describe('bearerToken', () => {
  it('reads RFC 6750 bearer credentials only', () => {
    expect(bearerToken('Bearer abc-DEF_123')).toBe('abc-DEF_123')
    expect(bearerToken('bearer abc')).toBe('abc')
    expect(bearerToken('Basic dXNlcjpwYXNz')).toBeUndefined()
    expect(bearerToken('Bearer')).toBeUndefined()
    expect(bearerToken('Bearer a b')).toBeUndefined()
    expect(bearerToken(undefined)).toBeUndefined()
  })
})
