/**
 * LAST_SEEN_INTERVAL: an enrollment's and a channel's last-seen time is written when it is older than the
 * interval (or the accepted token changed), so that frequent check-ins cost no write each; 0 writes it on
 * every request. The admin API's last_seen_at and STALE_AFTER read these times.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, type Device } from '../../helpers/device.js'

let coalesced: TestApp
let everyRequest: TestApp

beforeAll(async () => {
  coalesced = await buildTestApp()
  everyRequest = await buildTestApp({ env: { LAST_SEEN_INTERVAL: '0' } })
})
afterAll(async () => Promise.all([coalesced?.close(), everyRequest?.close()]))

async function seen(t: TestApp, device: Device) {
  const enrollment = await t.app.db.prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: device.enrollmentId } })
  const channels = await t.app.db.prisma.mdmChannel.findMany({ where: { mdmEnrollmentId: enrollment.id } })
  return { enrollment: enrollment.lastSeenAt.getTime(), channels: channels.map((c) => c.lastSeenAt.getTime()), id: enrollment.id }
}

describe('LAST_SEEN_INTERVAL', () => {
  it('by default (60 s) a second Idle within the interval writes no time; once the stored time is older, it does', async () => {
    const device = await activeDevice(coalesced.app)
    const first = await seen(coalesced, device)
    expect((await device.idle()).statusCode).toBe(200)
    expect(await seen(coalesced, device)).toEqual(first)

    const old = new Date(Date.now() - 120_000)
    await coalesced.app.db.prisma.mdmEnrollment.update({ where: { id: first.id }, data: { lastSeenAt: old } })
    await coalesced.app.db.prisma.mdmChannel.updateMany({ where: { mdmEnrollmentId: first.id }, data: { lastSeenAt: old } })
    const before = Date.now()
    expect((await device.idle()).statusCode).toBe(200)
    const after = await seen(coalesced, device)
    expect(after.enrollment).toBeGreaterThanOrEqual(before - 1000)
    for (const c of after.channels) expect(c).toBeGreaterThanOrEqual(before - 1000)
  })

  it('0 writes the time on every request', async () => {
    const device = await activeDevice(everyRequest.app)
    const first = await seen(everyRequest, device)
    await new Promise((r) => setTimeout(r, 5))
    expect((await device.idle()).statusCode).toBe(200)
    const second = await seen(everyRequest, device)
    expect(second.enrollment).toBeGreaterThan(first.enrollment)
    expect(second.channels[0]).toBeGreaterThan(first.channels[0]!)
  })
})
