/**
 * The bearer token on check-in (PROTOCOL.md section 4, SECURITY.md row 17): another user's token is
 * refused (403); a sign-in that no longer holds (unknown, expired or revoked token, deactivated user,
 * enrollment window or REAUTH_AFTER passed) gets 401 with exactly the enroll endpoint's challenge, never on
 * CheckOut and never without a token (the macOS device channel: 200, held, no command); a fresh token of
 * the same user from the new sign-in is accepted and becomes the enrollment's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mintAccessToken } from '../../../src/services/tokens.js'
import { postEnroll, signIn } from '../../helpers/enroll.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, checkinRows, enrollDevice, type Device } from '../../helpers/device.js'

const HOUR = 3600_000
let t: TestApp
/** What the enroll endpoint answers without a token: the challenge check-in must repeat exactly. */
let challenge: string
/** Every token handed out here, to check the logs for them at the end. */
const secrets: string[] = []

beforeAll(async () => {
  t = await buildTestApp()
  const res = await postEnroll(t.app)
  expect(res.statusCode).toBe(401)
  challenge = res.headers['www-authenticate'] as string
})
afterAll(async () => {
  // Nothing secret reached a log line, whatever was refused.
  const all = t.logLines.join('\n')
  for (const secret of secrets) expect(all).not.toContain(secret)
  await t?.close()
})

const prisma = () => t.app.db.prisma

/** A new interactive sign-in of the device's user: a brand new token of the same user and team. */
async function signInAgain(device: Device, app = t.app): Promise<string> {
  const minted = await mintAccessToken(app.db.prisma, { userId: device.user.userId, teamId: app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
  secrets.push(minted.token)
  return minted.token
}

async function enrolled(app = t.app) {
  const device = await enrollDevice(app)
  secrets.push(device.user.token)
  return device
}

/** 401 with the enroll endpoint's challenge and an empty body; nothing written. */
async function reauthentication(send: () => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>, app = t.app) {
  const before = await checkinRows(app)
  const res = await send()
  expect(res.statusCode, res.body).toBe(401)
  expect(res.headers['www-authenticate']).toBe(challenge)
  expect(res.body).toBe('')
  expect(await checkinRows(app)).toEqual(before)
}

/** A request without a token where a token would be refused: 200 with an empty body, never 401. */
async function held(send: () => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>) {
  const res = await send()
  expect(res.statusCode, res.body).toBe(200)
  expect(res.headers['www-authenticate']).toBeUndefined()
  expect(res.body).toBe('')
}

async function forbidden(send: () => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>) {
  const before = await checkinRows(t.app)
  const res = await send()
  expect(res.statusCode, res.body).toBe(403)
  expect(res.headers['www-authenticate']).toBeUndefined()
  expect(await checkinRows(t.app)).toEqual(before)
}

describe('the first Authenticate', () => {
  it('with another user\'s token is 403 and binds nothing', async () => {
    const device = await enrolled()
    const other = await signIn(t.app)
    secrets.push(other.token)
    await forbidden(() => device.authenticate({ token: other.token }))
    expect(await prisma().mdmEnrollment.count({ where: { enrollmentId: device.enrollmentId } })).toBe(0)
  })

  it('with a token of the same user for another team is 403', async () => {
    const device = await enrolled()
    const team = await prisma().team.create({ data: { name: 'Contractors', enrollmentToken: `team-${Date.now()}` } })
    const minted = await mintAccessToken(prisma(), { userId: device.user.userId, teamId: team.id, method: 'saml', windowSeconds: 3600 })
    secrets.push(minted.token)
    await forbidden(() => device.authenticate({ token: minted.token }))
  })

  it('with an expired, revoked, unknown or non-bearer credential is 401 with the enroll challenge', async () => {
    const device = await enrolled()
    await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { expiresAt: new Date(Date.now() - 1000) } })
    await reauthentication(() => device.authenticate())
    await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { expiresAt: null, revokedAt: new Date() } })
    await reauthentication(() => device.authenticate())
    await reauthentication(() => device.authenticate({ token: 'c'.repeat(43) }))
    await reauthentication(() => device.authenticate({ token: null, headers: { authorization: 'Basic dXNlcjpwYXNz' } }))
    // The new sign-in's token is accepted for this certificate.
    const fresh = await signInAgain(device)
    device.token = fresh
    expect((await device.authenticate()).statusCode).toBe(200)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment.accessTokenId).toBe(device.user.tokenId)
    expect(enrollment.currentAccessTokenId).not.toBe(device.user.tokenId)
  })

  it('without a bearer (macOS device channel) is bound through the certificate', async () => {
    const device = await enrolled()
    expect((await device.authenticate({ token: null })).statusCode).toBe(200)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment).toMatchObject({ userId: device.user.userId, accessTokenId: device.user.tokenId, currentAccessTokenId: device.user.tokenId })
  })

  it('after the enrollment window of the sign-in is 401 (403 without a token); a new sign-in of the same user enrolls', async () => {
    const device = await enrolled()
    await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { createdAt: new Date(Date.now() - 2 * HOUR) } })
    await reauthentication(() => device.authenticate())
    const before = await checkinRows(t.app)
    const withoutToken = await device.authenticate({ token: null })
    expect(withoutToken.statusCode).toBe(403)
    expect(withoutToken.json()).toMatchObject({ error: 'sign_in_required' })
    expect(await checkinRows(t.app)).toEqual(before)
    device.token = await signInAgain(device)
    expect((await device.authenticate()).statusCode).toBe(200)
  })
})

describe('after enrollment', () => {
  it('deactivating the user: the next Idle, TokenUpdate and DeclarativeManagement get 401 with the challenge (held without a token); CheckOut still 200', async () => {
    const device = await activeDevice(t.app)
    secrets.push(device.user.token)
    await prisma().user.update({ where: { id: device.user.userId }, data: { active: false } })
    await reauthentication(() => device.idle())
    await held(() => device.idle({ token: null }))
    await reauthentication(() => device.tokenUpdate())
    await reauthentication(() => device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'tokens' })))
    const out = await device.checkOut()
    expect(out.statusCode).toBe(200)
    expect((await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })).status).toBe('checked_out')
  })

  it('revoking the token: 401 until the device comes back with a fresh sign-in, which becomes the enrollment\'s token', async () => {
    const device = await activeDevice(t.app)
    secrets.push(device.user.token)
    await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { revokedAt: new Date() } })
    await reauthentication(() => device.idle())
    // The macOS device channel has no token to present: the one it stands on is revoked, so it is held.
    await held(() => device.idle({ token: null }))

    const fresh = await signInAgain(device)
    expect((await device.idle({ token: fresh })).statusCode).toBe(200)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    const freshRecord = await prisma().accessToken.findFirstOrThrow({ where: { userId: device.user.userId }, orderBy: { createdAt: 'desc' } })
    expect(enrollment.currentAccessTokenId).toBe(freshRecord.id)
    expect(enrollment.signedInAt.getTime()).toBe(freshRecord.createdAt.getTime())
    // Now the device channel without a bearer stands on the fresh token.
    expect((await device.idle({ token: null })).statusCode).toBe(200)
    // The revoked token stays refused.
    await reauthentication(() => device.idle())
  })

  it('another user\'s token on a later message is 403, not a re-authentication', async () => {
    const device = await activeDevice(t.app)
    secrets.push(device.user.token)
    const other = await signIn(t.app)
    secrets.push(other.token)
    await forbidden(() => device.idle({ token: other.token }))
    await forbidden(() => device.tokenUpdate({ token: other.token }))
  })

  it('CheckOut is 200 whatever the token: revoked, unknown or another user\'s', async () => {
    for (const token of ['revoked', 'unknown', 'other'] as const) {
      const device = await activeDevice(t.app)
      secrets.push(device.user.token)
      let presented = device.user.token
      if (token === 'revoked') await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { revokedAt: new Date() } })
      if (token === 'unknown') presented = 'u'.repeat(43)
      if (token === 'other') presented = (await signIn(t.app)).token
      expect((await device.checkOut({ token: presented })).statusCode, token).toBe(200)
    }
  })
})

describe('REAUTH_AFTER', () => {
  let r: TestApp
  beforeAll(async () => {
    r = await buildTestApp({ env: { REAUTH_AFTER: '1h' }, database: t.database })
  })
  afterAll(async () => r?.app.close())

  it('asks for a new sign-in once the last one is older than the interval, wherever a token is sent, but on CheckOut', async () => {
    const device = await activeDevice(r.app)
    secrets.push(device.user.token)
    expect((await device.idle()).statusCode).toBe(200)
    // The sign-in happened two hours ago.
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR)
    await r.app.db.prisma.accessToken.update({ where: { id: device.user.tokenId }, data: { createdAt: twoHoursAgo } })
    await r.app.db.prisma.mdmEnrollment.updateMany({ where: { enrollmentId: device.enrollmentId }, data: { signedInAt: twoHoursAgo } })
    await reauthentication(() => device.idle(), r.app)
    await held(() => device.idle({ token: null }))
    await reauthentication(() => device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'tokens' })), r.app)
    expect((await device.checkOut({ token: null })).statusCode).toBe(200)
  })

  it('a re-authentication updates the binding for every channel', async () => {
    const device = await activeDevice(r.app)
    secrets.push(device.user.token)
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR)
    await r.app.db.prisma.accessToken.update({ where: { id: device.user.tokenId }, data: { createdAt: twoHoursAgo } })
    await r.app.db.prisma.mdmEnrollment.updateMany({ where: { enrollmentId: device.enrollmentId }, data: { signedInAt: twoHoursAgo } })
    await reauthentication(() => device.idle(), r.app)
    device.token = await signInAgain(device, r.app)
    expect((await device.idle()).statusCode).toBe(200)
    expect((await device.idle({ token: null })).statusCode).toBe(200)
    const enrollment = await r.app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(Date.now() - enrollment.signedInAt.getTime()).toBeLessThan(HOUR)
  })

  it('is off by default: a sign-in of long ago still works on the default server', async () => {
    const device = await activeDevice(t.app)
    secrets.push(device.user.token)
    await prisma().accessToken.update({ where: { id: device.user.tokenId }, data: { createdAt: new Date(Date.now() - 400 * 24 * HOUR) } })
    await prisma().mdmEnrollment.updateMany({ where: { enrollmentId: device.enrollmentId }, data: { signedInAt: new Date(Date.now() - 400 * 24 * HOUR) } })
    expect((await device.idle()).statusCode).toBe(200)
  })
})

describe('a Mac: the device channel never gets 401, the user channel asks for the sign-in (PROTOCOL.md section 4)', () => {
  let r: TestApp
  beforeAll(async () => {
    r = await buildTestApp({ env: { REAUTH_AFTER: '1h' }, database: t.database })
  })
  afterAll(async () => r?.app.close())

  const USER_ID = '2B1D0E54-5C55-4A43-8C1E-6A2E9C1C7E21'
  async function mac(app: TestApp['app']) {
    const device = await activeDevice(app, { mac: true })
    secrets.push(device.user.token)
    const user = await device.tokenUpdate(undefined, { EnrollmentUserID: USER_ID, UserShortName: 'alice', Token: new Uint8Array([1, 2]), PushMagic: 'USER' })
    expect(user.statusCode, user.body).toBe(200)
    return device
  }
  const userIdle = (device: Device) => device.idle(undefined, { EnrollmentUserID: USER_ID })

  it.each([
    ['a deactivated user', async (d: Device, app: TestApp['app']) => void (await app.db.prisma.user.update({ where: { id: d.user.userId }, data: { active: false } }))],
    ['a revoked token', async (d: Device, app: TestApp['app']) => void (await app.db.prisma.accessToken.update({ where: { id: d.user.tokenId }, data: { revokedAt: new Date() } }))],
    [
      'an expired REAUTH_AFTER',
      async (d: Device, app: TestApp['app']) => {
        const twoHoursAgo = new Date(Date.now() - 2 * HOUR)
        await app.db.prisma.accessToken.update({ where: { id: d.user.tokenId }, data: { createdAt: twoHoursAgo } })
        await app.db.prisma.mdmEnrollment.updateMany({ where: { enrollmentId: d.enrollmentId }, data: { signedInAt: twoHoursAgo } })
      },
    ],
  ])('with %s: device-channel Idle 200 and empty, user-channel Idle 401 with the challenge', async (_what, spoil) => {
    const device = await mac(r.app)
    await spoil(device, r.app)
    await held(() => device.idle({ token: null }))
    await held(() => device.tokenUpdate({ token: null }))
    await reauthentication(() => userIdle(device), r.app)
    // The user signs in again on the user channel; the device channel stands on that sign-in.
    if (_what === 'a deactivated user') await r.app.db.prisma.user.update({ where: { id: device.user.userId }, data: { active: true } })
    device.token = await signInAgain(device, r.app)
    expect((await userIdle(device)).statusCode).toBe(200)
    expect((await device.idle({ token: null })).statusCode).toBe(200)
  })
})
