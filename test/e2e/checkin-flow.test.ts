/**
 * The whole life of an enrollment on the check-in and command channel, driven by an emulated device
 * through the real endpoints: enroll -> profile -> SCEP -> Authenticate -> TokenUpdate -> Idle -> CheckOut,
 * with the recorded device plists as bodies, signed with node:crypto and with openssl.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PLACEHOLDER_TOPIC } from '../../src/services/profiles.js'
import { certificateFingerprint, findDeviceCertificate } from '../../src/services/device-certificates.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, checkinRows, COMMAND, enrollDevice } from '../helpers/device.js'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(async () => t?.close())

const prisma = () => t.app.db.prisma

describe('enroll -> SCEP -> Authenticate -> TokenUpdate -> Idle -> CheckOut', () => {
  it('binds the enrollment to the certificate, user, team, token and profile and goes active on TokenUpdate', async () => {
    const device = await enrollDevice(t.app)
    expect(device.topic).toBe(PLACEHOLDER_TOPIC)
    expect(device.path).toBe('/mdm/apple/mdm')
    const stored = (await findDeviceCertificate(prisma(), certificateFingerprint(device.certificate.raw)))!

    const auth = await device.authenticate()
    expect(auth.statusCode, auth.body).toBe(200)
    expect(auth.body).toBe('')
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment).toMatchObject({
      status: 'authenticated',
      userId: device.user.userId,
      teamId: t.app.defaultTeam.id,
      accessTokenId: device.user.tokenId,
      currentAccessTokenId: device.user.tokenId,
      enrollmentProfileId: stored.enrollmentProfileId,
      topic: PLACEHOLDER_TOPIC,
      productName: 'iPhone12,1',
      osVersion: '18.2.1',
      buildVersion: '22C161',
      activatedAt: null,
      checkedOutAt: null,
    })
    expect(enrollment.enrollmentProfileId).not.toBeNull()
    expect(await prisma().mdmEnrollmentCertificate.findMany()).toEqual([expect.objectContaining({ deviceCertificateId: stored.id, mdmEnrollmentId: enrollment.id })])

    const update = await device.tokenUpdate()
    expect(update.statusCode, update.body).toBe(200)
    expect(update.body).toBe('')
    const active = await prisma().mdmEnrollment.findUniqueOrThrow({ where: { id: enrollment.id } })
    expect(active.status).toBe('active')
    expect(active.activatedAt).not.toBeNull()
    const channel = await prisma().mdmChannel.findFirstOrThrow({ where: { mdmEnrollmentId: enrollment.id } })
    expect(channel).toMatchObject({
      channelId: device.enrollmentId,
      enrollmentUserId: null,
      topic: PLACEHOLDER_TOPIC,
      // The recorded Token <data>, as hex.
      pushToken: Buffer.from('ftAoCo4gNk3mxQgFVRXRJfO8qYsMpS46kHClaugCnt8=', 'base64').toString('hex'),
      pushMagic: '7B8A04B0-E9B8-4BB3-8A85-4FD5FA1F70E9',
      awaitingConfiguration: false,
    })

    const idle = await device.idle()
    expect(idle.statusCode, idle.body).toBe(200)
    expect(idle.body).toBe('')

    const out = await device.checkOut({ token: null })
    expect(out.statusCode, out.body).toBe(200)
    const gone = await prisma().mdmEnrollment.findUniqueOrThrow({ where: { id: enrollment.id } })
    expect(gone.status).toBe('checked_out')
    expect(gone.checkedOutAt).not.toBeNull()
    // No push can reach a checked-out enrollment; the history stays.
    expect(await prisma().mdmChannel.findFirstOrThrow({ where: { mdmEnrollmentId: enrollment.id } })).toMatchObject({ pushToken: null, pushMagic: null })
  })

  it('accepts signatures made by openssl cms -sign over the same bodies', async () => {
    const device = await enrollDevice(t.app)
    for (const res of [await device.authenticate({ openssl: true }), await device.tokenUpdate({ openssl: true }), await device.idle({ openssl: true })]) {
      expect(res.statusCode, res.body).toBe(200)
    }
    expect((await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })).status).toBe('active')
  })

  it('accepts SHA-256 and SHA-1 signatures alike', async () => {
    const device = await enrollDevice(t.app)
    expect((await device.authenticate({ digest: 'sha256' })).statusCode).toBe(200)
    expect((await device.tokenUpdate({ digest: 'sha1' })).statusCode).toBe(200)
    expect((await device.idle({ digest: 'sha512' })).statusCode).toBe(200)
  })

  it('treats a repeated Authenticate as the same enrollment (devices retry), and repeats of TokenUpdate and Idle too', async () => {
    const device = await enrollDevice(t.app)
    expect((await device.authenticate()).statusCode).toBe(200)
    const first = await checkinRows(t.app)
    expect((await device.authenticate()).statusCode).toBe(200)
    const again = await checkinRows(t.app)
    expect(again.enrollments.length).toBe(first.enrollments.length)
    expect(again.certificates).toEqual(first.certificates)
    expect(again.channels.length).toBe(first.channels.length)

    for (let i = 0; i < 2; i++) expect((await device.tokenUpdate()).statusCode).toBe(200)
    for (let i = 0; i < 2; i++) expect((await device.idle()).statusCode).toBe(200)
    const rows = await prisma().mdmEnrollment.findMany({ where: { enrollmentId: device.enrollmentId } })
    expect(rows).toHaveLength(1)
    expect(await prisma().mdmChannel.count({ where: { mdmEnrollmentId: rows[0]!.id } })).toBe(1)
  })

  it('stores a changed push token and PushMagic from a later TokenUpdate', async () => {
    const device = await activeDevice(t.app)
    const res = await device.tokenUpdate(undefined, { Token: new Uint8Array([1, 2, 0xfe]), PushMagic: 'NEW-MAGIC', AwaitingConfiguration: true })
    expect(res.statusCode).toBe(200)
    const channel = await prisma().mdmChannel.findFirstOrThrow({ where: { channelId: device.enrollmentId } })
    expect(channel).toMatchObject({ pushToken: '0102fe', pushMagic: 'NEW-MAGIC', awaitingConfiguration: true })
  })

  it('answers a result for a command it never sent with an empty 200 and writes nothing about it', async () => {
    const device = await activeDevice(t.app)
    const before = await checkinRows(t.app)
    const res = await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: '0C8E5E1C-0000-4000-8000-000000000000' })
    expect(res.statusCode).toBe(200)
    expect(res.body).toBe('')
    const after = await checkinRows(t.app)
    expect(after.enrollments.length).toBe(before.enrollments.length)
    expect(after.channels.length).toBe(before.channels.length)
  })

  it('logs one line per message naming the enrollment and MessageType, never the token, PushMagic, push token or body', async () => {
    const device = await activeDevice(t.app)
    const idle = await device.idle()
    // One line for the whole request: who and what, the request, the status and the time.
    const own = t.logs().filter((l) => l.reqId === idle.headers['x-request-id'])
    expect(own).toEqual([expect.objectContaining({ msg: 'command report Idle', req: expect.objectContaining({ method: 'PUT' }), res: { statusCode: 200 }, responseTime: expect.any(Number) })])
    const lines = t.logLines.filter((l) => l.includes(device.enrollmentId))
    const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg)
    expect(messages).toEqual(expect.arrayContaining(['check-in Authenticate', 'check-in TokenUpdate', 'command report Idle']))
    const all = t.logLines.join('\n')
    for (const secret of [device.user.token, '7B8A04B0-E9B8-4BB3-8A85-4FD5FA1F70E9', 'ftAoCo4gNk3mxQgFVRXRJfO8qYsMpS46kHClaugCnt8=', Buffer.from('ftAoCo4gNk3mxQgFVRXRJfO8qYsMpS46kHClaugCnt8=', 'base64').toString('hex'), device.sign(device.body('idle'))]) {
      expect(all).not.toContain(secret)
    }
    expect(all).not.toContain('<plist')
  })
})

describe('the command channel', () => {
  it('answers Idle from an active enrollment with an empty 200', async () => {
    const device = await activeDevice(t.app)
    const res = await device.idle()
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-length']).toBe('0')
  })

  it('is told apart from check-in by Content-Type alone: an Idle report sent as a check-in is not a check-in message', async () => {
    const device = await activeDevice(t.app)
    const res = await device.put(device.body('idle'), { contentType: 'application/x-apple-aspen-mdm-checkin' })
    expect(res.statusCode).toBe(400)
    expect(res.json().message).toMatch(/MessageType is missing/)
    const asCommand = await device.put(device.body('idle'), { contentType: `${COMMAND}; charset=utf-8` })
    expect(asCommand.statusCode).toBe(200)
  })
})
