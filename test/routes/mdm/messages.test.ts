/**
 * The check-in messages beyond Authenticate/TokenUpdate/CheckOut, the Topic rule, and the macOS user
 * channel (`EnrollmentID:EnrollmentUserID`, its own channel row linked to the device enrollment).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EMPTY_DECLARATIONS_TOKEN } from '../../../src/protocol/declarations.js'
import { MAX_USER_CHANNELS } from '../../../src/services/checkin.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, checkinRows, enrollDevice, type Device } from '../../helpers/device.js'

let t: TestApp
let device: Device

beforeAll(async () => {
  t = await buildTestApp()
  device = await activeDevice(t.app)
})
afterAll(async () => t?.close())

const prisma = () => t.app.db.prisma
const ddm = (d: Device, Endpoint: string, extra: Record<string, Uint8Array | string> = {}) => d.put(d.message({ MessageType: 'DeclarativeManagement', Endpoint, ...extra }))

describe('DeclarativeManagement: the empty declaration set', () => {
  it('tokens and declaration-items name the same DeclarationsToken; status is an empty 200', async () => {
    const tokens = await ddm(device, 'tokens')
    expect(tokens.statusCode, tokens.body).toBe(200)
    expect(tokens.headers['content-type']).toMatch(/^application\/json/)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(tokens.json()).toEqual({ SyncTokens: { DeclarationsToken: EMPTY_DECLARATIONS_TOKEN, Timestamp: `${enrollment.authenticatedAt.toISOString().slice(0, 19)}Z` } })
    expect((await ddm(device, 'tokens')).json()).toEqual(tokens.json())

    const items = await ddm(device, 'declaration-items')
    expect(items.statusCode).toBe(200)
    expect(items.json()).toEqual({ Declarations: { Activations: [], Configurations: [], Assets: [], Management: [] }, DeclarationsToken: EMPTY_DECLARATIONS_TOKEN })

    const report = Buffer.from(JSON.stringify({ StatusItems: {}, Errors: [] }))
    const status = await ddm(device, 'status', { Data: new Uint8Array(report) })
    // Apple, "Get the device status": 204 No Content.
    expect(status.statusCode).toBe(204)
    expect(status.body).toBe('')
  })

  it('answers 404 for any declaration and any unknown endpoint', async () => {
    for (const endpoint of ['declaration/configuration/com.example.wifi', 'declaration/activation/x', 'declaration/nonsense/x', 'inventory', '../tokens']) {
      expect((await ddm(device, endpoint)).statusCode, endpoint).toBe(404)
    }
  })
})

describe('messages this server does not serve', () => {
  it('GetToken is 400 (Apple: an unrecognised service type)', async () => {
    const res = await device.put(device.message({ MessageType: 'GetToken', TokenServiceType: 'com.apple.maid' }))
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toBe('unsupported_token_service')
  })

  it('UserAuthenticate is 410: the server does not manage other macOS users', async () => {
    const before = await checkinRows(t.app)
    const res = await device.put(device.message({ MessageType: 'UserAuthenticate', EnrollmentUserID: 'NETWORK-USER', UserID: 'A1B2' }))
    expect(res.statusCode).toBe(410)
    expect(res.body).toBe('')
    expect(await checkinRows(t.app)).toEqual(before)
  })

  it('SetBootstrapToken, GetBootstrapToken and ReturnToService (forbidden under user enrollment) are 400', async () => {
    for (const type of ['SetBootstrapToken', 'GetBootstrapToken', 'ReturnToService']) {
      const res = await device.put(device.message({ MessageType: type }))
      expect(res.statusCode, type).toBe(400)
      expect(res.json().message).toMatch(/not supported for user enrollments/)
    }
  })

  it('Authenticate on the user channel is 400: it is a device-channel message', async () => {
    const fresh = await enrollDevice(t.app)
    const res = await fresh.put(fresh.body('authenticate', { EnrollmentUserID: 'USER-1' }))
    expect(res.statusCode).toBe(400)
    expect(await prisma().mdmEnrollment.count({ where: { enrollmentId: fresh.enrollmentId } })).toBe(0)
  })
})

describe('Topic', () => {
  it('must be the enrollment profile\'s at Authenticate and stay the same afterwards (400, nothing written)', async () => {
    const fresh = await enrollDevice(t.app)
    const before = await checkinRows(t.app)
    const res = await fresh.put(fresh.body('authenticate', { Topic: 'com.apple.mgmt.External.other' }))
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toBe('topic_mismatch')
    expect(await checkinRows(t.app)).toEqual(before)

    expect((await fresh.authenticate()).statusCode).toBe(200)
    const after = await checkinRows(t.app)
    expect((await fresh.tokenUpdate(undefined, { Topic: 'com.apple.mgmt.External.other' })).statusCode).toBe(400)
    expect(await checkinRows(t.app)).toEqual(after)
  })
})

describe('the macOS user channel', () => {
  const USER_ID = 'C5A4D8C2-1E0F-4E48-9B7E-2E5C1F1B0A77'
  const userUpdate = (d: Device, extra: Record<string, string | Uint8Array> = {}) =>
    d.tokenUpdate(undefined, { EnrollmentUserID: USER_ID, UserShortName: 'alice', UserLongName: 'Alice Example', Token: new Uint8Array([0xaa, 0xbb]), PushMagic: 'USER-MAGIC', AwaitingConfiguration: null, ...extra })

  it('is its own channel linked to the device enrollment; the device channel needs no bearer, the user channel sends it', async () => {
    const mac = await enrollDevice(t.app, { mac: true })
    expect((await mac.authenticate({ token: null })).statusCode).toBe(200)
    expect((await mac.tokenUpdate({ token: null })).statusCode).toBe(200)
    const user = await userUpdate(mac)
    expect(user.statusCode, user.body).toBe(200)

    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: mac.enrollmentId } })
    expect(enrollment.status).toBe('active')
    const channels = await prisma().mdmChannel.findMany({ where: { mdmEnrollmentId: enrollment.id }, orderBy: { createdAt: 'asc' } })
    expect(channels.map((c) => c.channelId).sort()).toEqual([mac.enrollmentId, `${mac.enrollmentId}:${USER_ID}`].sort())
    expect(channels.find((c) => c.enrollmentUserId === USER_ID)).toMatchObject({ userShortName: 'alice', userLongName: 'Alice Example', pushToken: 'aabb', pushMagic: 'USER-MAGIC' })
    // The device channel keeps its own token.
    expect(channels.find((c) => c.enrollmentUserId === null)!.pushToken).not.toBe('aabb')

    expect((await mac.idle({ token: null })).statusCode).toBe(200)
    expect((await mac.idle(undefined, { EnrollmentUserID: USER_ID })).statusCode).toBe(200)
    // A user that never sent TokenUpdate has no channel to report on.
    const before = await checkinRows(t.app)
    expect((await mac.idle(undefined, { EnrollmentUserID: 'SOMEONE-ELSE' })).statusCode).toBe(403)
    expect(await checkinRows(t.app)).toEqual(before)

    // Repeated user-channel TokenUpdates update the one row.
    expect((await userUpdate(mac, { PushMagic: 'USER-MAGIC-2' })).statusCode).toBe(200)
    expect(await prisma().mdmChannel.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(2)

    // CheckOut (device channel) ends both channels.
    expect((await mac.checkOut({ token: null })).statusCode).toBe(200)
    const after = await prisma().mdmChannel.findMany({ where: { mdmEnrollmentId: enrollment.id } })
    expect(after.every((c) => c.pushToken === null && c.pushMagic === null)).toBe(true)
    expect((await mac.idle(undefined, { EnrollmentUserID: USER_ID })).statusCode).toBe(403)
  })

  it('concurrent first TokenUpdates of one user make one channel row', async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const results = await Promise.all(Array.from({ length: 4 }, () => userUpdate(mac)))
    expect(results.map((r) => r.statusCode)).toEqual([200, 200, 200, 200])
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: mac.enrollmentId } })
    expect(await prisma().mdmChannel.count({ where: { mdmEnrollmentId: enrollment.id, enrollmentUserId: USER_ID } })).toBe(1)
  })

  it('exists only on a Mac: an iPhone\'s user-channel TokenUpdate is 400 and writes nothing (SECURITY.md row 27)', async () => {
    const phone = await activeDevice(t.app)
    const before = await checkinRows(t.app)
    const res = await userUpdate(phone)
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'user_channel_not_allowed' })
    expect(await checkinRows(t.app)).toEqual(before)
  })

  it(`is capped at ${MAX_USER_CHANNELS} per enrollment: a new user past the cap is 403, known users still update`, async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const users = Array.from({ length: MAX_USER_CHANNELS }, (_, i) => `USER-${i}`)
    for (const u of users) expect((await userUpdate(mac, { EnrollmentUserID: u })).statusCode).toBe(200)
    const before = await checkinRows(t.app)
    const res = await userUpdate(mac, { EnrollmentUserID: 'ONE-TOO-MANY' })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ error: 'too_many_user_channels' })
    expect(await checkinRows(t.app)).toEqual(before)
    expect((await userUpdate(mac, { EnrollmentUserID: users[0]!, PushMagic: 'AGAIN' })).statusCode).toBe(200)
  })

  it('a user channel of another enrollment\'s EnrollmentID is refused', async () => {
    const other = await activeDevice(t.app)
    const before = await checkinRows(t.app)
    const res = await other.put(other.body('token-update', { EnrollmentID: device.enrollmentId, EnrollmentUserID: USER_ID }))
    expect(res.statusCode).toBe(403)
    expect(await checkinRows(t.app)).toEqual(before)
    expect((await other.idle(undefined, { EnrollmentID: device.enrollmentId, EnrollmentUserID: USER_ID })).statusCode).toBe(403)
  })
})
