/**
 * SECURITY.md rows 9, 11 and 12 and the enrollment's life: the order of messages (nothing before
 * Authenticate, nothing after CheckOut), duplicates and concurrent duplicates (one row each), a
 * re-enrollment after CheckOut, and renewed identity certificates continuing their enrollment.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildCsr, nameDer } from '../../../src/pki/scep/client.js'
import { MessageType } from '../../../src/pki/scep/types.js'
import { certificateFingerprint, findDeviceCertificate } from '../../../src/services/device-certificates.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, checkinRows, COMMAND, Device, enrollDevice } from '../../helpers/device.js'
import { certRep, issuedCertificate, postPkiOperation, rsaKeys, scepRequest } from '../../helpers/scep.js'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(async () => t?.close())

const prisma = () => t.app.db.prisma

async function unchanged(send: () => Promise<{ statusCode: number; body: string }>, status: number) {
  const before = await checkinRows(t.app)
  const res = await send()
  expect(res.statusCode, res.body).toBe(status)
  expect(await checkinRows(t.app)).toEqual(before)
  return res
}

/** The rows without the times every accepted message refreshes. */
async function structure() {
  const rows = await checkinRows(t.app)
  return {
    enrollments: rows.enrollments.map(({ lastSeenAt: _l, updatedAt: _u, ...rest }) => rest),
    certificates: rows.certificates,
    channels: rows.channels.map(({ lastSeenAt: _l, updatedAt: _u, ...rest }) => rest),
  }
}

describe('row 9: before Authenticate and after CheckOut', () => {
  it('TokenUpdate, Idle, CheckOut and DeclarativeManagement before Authenticate are 403 and write nothing', async () => {
    const device = await enrollDevice(t.app)
    await unchanged(() => device.tokenUpdate(), 403)
    await unchanged(() => device.idle(), 403)
    await unchanged(() => device.checkOut(), 403)
    await unchanged(() => device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'tokens' })), 403)
    expect((await device.authenticate()).statusCode).toBe(200)
  })

  it('a command report after Authenticate but before TokenUpdate is 403: nothing is delivered to an enrollment without a push token', async () => {
    const device = await enrollDevice(t.app)
    expect((await device.authenticate()).statusCode).toBe(200)
    await unchanged(() => device.idle(), 403)
  })

  it('after CheckOut: TokenUpdate, Idle and Authenticate with the same certificate are 403; CheckOut again is 200', async () => {
    const device = await activeDevice(t.app)
    expect((await device.checkOut()).statusCode).toBe(200)
    await unchanged(() => device.tokenUpdate(), 403)
    await unchanged(() => device.idle(), 403)
    await unchanged(() => device.authenticate(), 403)
    await unchanged(() => device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'tokens' })), 403)
    const again = await device.checkOut()
    expect(again.statusCode).toBe(200)
  })

  it('a new enrollment of the same EnrollmentID after CheckOut is a fresh enrollment; the old one stays as history', async () => {
    const first = await activeDevice(t.app)
    expect((await first.checkOut()).statusCode).toBe(200)
    const second = await enrollDevice(t.app)
    second.enrollmentId = first.enrollmentId
    expect((await second.authenticate()).statusCode).toBe(200)
    expect((await second.tokenUpdate()).statusCode).toBe(200)
    expect((await second.idle()).statusCode).toBe(200)
    const rows = await prisma().mdmEnrollment.findMany({ where: { enrollmentId: first.enrollmentId }, orderBy: { createdAt: 'asc' } })
    expect(rows.map((r) => r.status)).toEqual(['checked_out', 'active'])
    // The old certificate still belongs to the old enrollment only.
    await unchanged(() => first.idle(), 403)
  })
})

describe('row 11: duplicates', () => {
  it('concurrent duplicate TokenUpdates: 200 each, one channel row, the enrollment active once', async () => {
    const device = await enrollDevice(t.app)
    expect((await device.authenticate()).statusCode).toBe(200)
    const results = await Promise.all(Array.from({ length: 6 }, () => device.tokenUpdate()))
    expect(results.map((r) => r.statusCode)).toEqual([200, 200, 200, 200, 200, 200])
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment.status).toBe('active')
    expect(await prisma().mdmChannel.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(1)
  })

  it('concurrent duplicate Authenticates: 200 each, one enrollment, one binding', async () => {
    const device = await enrollDevice(t.app)
    const results = await Promise.all(Array.from({ length: 5 }, () => device.authenticate()))
    expect(results.map((r) => r.statusCode)).toEqual([200, 200, 200, 200, 200])
    expect(await prisma().mdmEnrollment.count({ where: { enrollmentId: device.enrollmentId } })).toBe(1)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(await prisma().mdmEnrollmentCertificate.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(1)
    expect(await prisma().mdmChannel.count({ where: { mdmEnrollmentId: enrollment.id } })).toBe(1)
  })

  it('duplicate and concurrent Idle reports: 200 each, no row added', async () => {
    const device = await activeDevice(t.app)
    const before = await structure()
    const results = await Promise.all(Array.from({ length: 4 }, () => device.idle()))
    expect(results.map((r) => r.statusCode)).toEqual([200, 200, 200, 200])
    expect((await device.idle()).statusCode).toBe(200)
    expect(await structure()).toEqual(before)
  })

  it('concurrent CheckOut and TokenUpdate leave the enrollment checked out without a push token', async () => {
    const device = await activeDevice(t.app)
    const [out] = await Promise.all([device.checkOut(), device.tokenUpdate()])
    expect(out.statusCode).toBe(200)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    expect(enrollment.status).toBe('checked_out')
    expect(await prisma().mdmChannel.findFirstOrThrow({ where: { mdmEnrollmentId: enrollment.id } })).toMatchObject({ pushToken: null, pushMagic: null })
  })
})

describe('row 12: reports about commands this server did not send', () => {
  it('an unknown CommandUUID is ignored: 200 with no next command, nothing written for it', async () => {
    const a = await activeDevice(t.app)
    const b = await activeDevice(t.app)
    const before = await structure()
    for (const status of ['Acknowledged', 'Error', 'CommandFormatError', 'NotNow']) {
      const res = await a.idle(undefined, { Status: status, CommandUUID: randomUUID() })
      expect(res.statusCode, status).toBe(200)
      expect(res.body).toBe('')
    }
    // The same result twice, and a result for a command "of" another device: no cross-device write.
    const uuid = randomUUID()
    for (const d of [b, b, a]) expect((await d.idle(undefined, { Status: 'Acknowledged', CommandUUID: uuid })).statusCode).toBe(200)
    expect(await structure()).toEqual(before)
    const note = t.logs().find((l) => (l.mdm as { reportStatus?: string } | undefined)?.reportStatus === 'NotNow')
    expect((note!.mdm as { note: string }).note).toMatch(/was not sent: ignored/)
  })
})

describe('renewed identity certificates (SCEP RenewalReq)', () => {
  async function renew(device: Device): Promise<Device> {
    const keys = rsaKeys()
    const csr = buildCsr({ keys, subject: nameDer([['CN', 'renewal']]) })
    const request = scepRequest(t.app, { keys, csr, messageType: MessageType.RenewalReq, signer: { certificate: device.certificate, privateKey: device.keys.privateKey } })
    const certificate = issuedCertificate(certRep(t.app, (await postPkiOperation(t.app, request.der)).rawPayload, request.signer))
    return new Device(t.app, keys, certificate, device.user, device.topic, device.path, device.enrollmentId, device.token)
  }

  it('a renewed certificate continues its enrollment: bound on first use, the same enrollment row', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
    const renewed = await renew(device)
    const twice = await renew(renewed)
    // A device may renew more than once before it next checks in.
    expect((await twice.idle()).statusCode).toBe(200)
    expect((await twice.tokenUpdate()).statusCode).toBe(200)
    expect((await renewed.idle()).statusCode).toBe(200)
    const stored = await Promise.all([twice, renewed].map((d) => findDeviceCertificate(prisma(), certificateFingerprint(d.certificate.raw))))
    const bound = await prisma().mdmEnrollmentCertificate.findMany({ where: { mdmEnrollmentId: enrollment.id } })
    expect(bound.map((b) => b.deviceCertificateId).sort()).toEqual([...stored.map((s) => s!.id), (await findDeviceCertificate(prisma(), certificateFingerprint(device.certificate.raw)))!.id].sort())
    expect(await prisma().mdmEnrollment.count({ where: { enrollmentId: device.enrollmentId } })).toBe(1)
  })

  it('a renewed certificate cannot claim another EnrollmentID, nor start a new enrollment', async () => {
    const device = await activeDevice(t.app)
    const renewed = await renew(device)
    renewed.enrollmentId = randomUUID().toUpperCase()
    const res = await renewed.authenticate()
    expect(res.statusCode).toBe(403)
    expect(await prisma().mdmEnrollment.count({ where: { enrollmentId: renewed.enrollmentId } })).toBe(0)
  })

  it('a renewal of a checked-out enrollment\'s certificate gets nothing from check-in', async () => {
    const device = await activeDevice(t.app)
    const renewed = await renew(device)
    expect((await device.checkOut()).statusCode).toBe(200)
    await unchanged(() => renewed.idle({ contentType: COMMAND }), 403)
  })
})
