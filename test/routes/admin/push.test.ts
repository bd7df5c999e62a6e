/** `POST /api/v1/admin/enrollments/{id}/push` (src/routes/admin/push.ts) against the fake APNs. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { startFakeApns, type FakeApns, type PushIdentityFixture } from '../../helpers/fake-apns.js'
import { apnsEnv, deviceChannel, pushableDevice } from '../../helpers/push.js'

const ADMIN_TOKEN = 'admin-token-0123456789abcdef0123456789abcdef'
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

let fake: FakeApns
let identity: PushIdentityFixture
let t: TestApp

beforeAll(async () => {
  fake = await startFakeApns()
  identity = await fake.issuePushIdentity()
  t = await buildTestApp({ env: { ...apnsEnv(fake, identity), ADMIN_API_TOKEN: ADMIN_TOKEN } })
}, 60_000)
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

const pushUrl = (id: string) => `/api/v1/admin/enrollments/${id}/push`
const post = (app: TestApp, id: string, headers: Record<string, string> = auth) => app.app.inject({ method: 'POST', url: pushUrl(id), headers })
const requestsFor = (token: string) => fake.requests.filter((r) => r.token === token)
const UUID = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/

describe('POST /api/v1/admin/enrollments/{id}/push', () => {
  it('pushes to every channel now and answers each outcome, with an audit line', async () => {
    const a = await pushableDevice(t.app)
    const { enrollment, channel } = await deviceChannel(t.app, a.device)
    const res = await post(t, enrollment.id)
    expect(res.statusCode).toBe(200)
    const body = res.json() as { enrollment_id: string; results: { channel_id: string; status: string; apns_id?: string }[] }
    expect(body).toMatchObject({ enrollment_id: enrollment.id, results: [{ channel_id: a.device.enrollmentId, status: 'delivered' }] })
    expect(body.results[0]!.apns_id).toMatch(UUID)
    expect(Object.keys(body.results[0]!).sort()).toEqual(['apns_id', 'channel_id', 'status'])
    expect(requestsFor(a.token)).toMatchObject([{ status: 200, body: `{"mdm":"${a.pushMagic}"}`, headers: { 'apns-topic': identity.topic } }])
    expect((await t.app.db.prisma.mdmChannel.findUniqueOrThrow({ where: { id: channel.id } })).pushStatus).toBe('delivered')
    expect(t.logs()).toContainEqual(expect.objectContaining({ msg: 'admin: enrollment.push', admin: expect.objectContaining({ action: 'enrollment.push', enrollment: enrollment.id }) }))
  })

  it('answers a Mac with its user channel: one result per channel', async () => {
    const a = await pushableDevice(t.app, { mac: true })
    const { enrollment } = await deviceChannel(t.app, a.device)
    // The macOS user channel: EnrollmentUserID, its own token, sent with the user's bearer token.
    const user = await a.device.tokenUpdate(undefined, { EnrollmentUserID: 'A1B2C3D4-0000-4000-8000-000000000001', UserShortName: 'alice', UserLongName: 'Alice', Token: new Uint8Array(Buffer.alloc(32, 7)), PushMagic: 'USER-MAGIC' })
    expect(user.statusCode).toBe(200)
    const res = await post(t, enrollment.id)
    expect(res.statusCode).toBe(200)
    const results = (res.json() as { results: { channel_id: string; status: string }[] }).results
    expect(results.map((r) => [r.channel_id, r.status]).sort()).toEqual(
      [
        [a.device.enrollmentId, 'delivered'],
        [`${a.device.enrollmentId}:A1B2C3D4-0000-4000-8000-000000000001`, 'delivered'],
      ].sort(),
    )
  })

  it('answers retrying when APNs asks to come back later, and keeps trying in the background', async () => {
    const a = await pushableDevice(t.app)
    const { enrollment, channel } = await deviceChannel(t.app, a.device)
    fake.respond(a.token, [{ status: 503, reason: 'ServiceUnavailable' }])
    const res = await post(t, enrollment.id)
    expect(res.json()).toMatchObject({ results: [{ channel_id: a.device.enrollmentId, status: 'retrying', reason: 'ServiceUnavailable' }] })
    await t.app.services.push.idle()
    expect(requestsFor(a.token).map((r) => r.status)).toEqual([503, 200])
    expect((await t.app.db.prisma.mdmChannel.findUniqueOrThrow({ where: { id: channel.id } })).pushStatus).toBe('delivered')
  })

  it('answers invalid_token for a token APNs called invalid, without asking APNs again', async () => {
    const a = await pushableDevice(t.app)
    const { enrollment } = await deviceChannel(t.app, a.device)
    fake.respond(a.token, [{ status: 410, reason: 'Unregistered', timestamp: Date.now() }])
    expect((await post(t, enrollment.id)).json()).toMatchObject({ results: [{ status: 'invalid_token', reason: 'Unregistered' }] })
    expect((await post(t, enrollment.id)).json()).toMatchObject({ results: [{ status: 'invalid_token', reason: 'Unregistered' }] })
    expect(requestsFor(a.token)).toHaveLength(1)
  })

  it('answers 401 without the admin token', async () => {
    const a = await pushableDevice(t.app)
    const { enrollment } = await deviceChannel(t.app, a.device)
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const res = await post(t, enrollment.id, headers)
      expect(res.statusCode).toBe(401)
      expect(res.json()).toMatchObject({ error: 'unauthorized' })
    }
    expect(requestsFor(a.token)).toHaveLength(0)
  })

  it('answers 404 for an unknown enrollment and 400 for an id that is not a UUID', async () => {
    const res = await post(t, '6f1c0c9e-8d1a-4c55-9a57-0d4b7c1e2f30')
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ error: 'not_found', message: 'No such enrollment' })
    const bad = await post(t, 'not-a-uuid')
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ error: 'invalid_request' })
  })

  it('answers 409 for a checked-out enrollment; a removed one is pushed so that its device learns to unenroll', async () => {
    const a = await pushableDevice(t.app)
    const checkedOut = (await deviceChannel(t.app, a.device)).enrollment
    expect((await a.device.checkOut()).statusCode).toBe(200)
    const res = await post(t, checkedOut.id)
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({ error: 'enrollment_ended', message: expect.stringContaining('checked_out') })

    const b = await pushableDevice(t.app)
    const removed = (await deviceChannel(t.app, b.device)).enrollment
    await t.app.db.prisma.mdmEnrollment.update({ where: { id: removed.id }, data: { status: 'removed', removedAt: new Date() } })
    const pushed = await post(t, removed.id)
    expect(pushed.statusCode).toBe(200)
    expect(pushed.json().results[0]).toMatchObject({ status: 'delivered' })
    expect(requestsFor(a.token)).toHaveLength(0)
    expect(requestsFor(b.token)).toHaveLength(1)
  })

  it('answers not_configured without push credentials', async () => {
    const off = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN }, database: t.database })
    try {
      const a = await pushableDevice(off.app)
      const { enrollment } = await deviceChannel(off.app, a.device)
      const res = await post(off, enrollment.id)
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ enrollment_id: enrollment.id, results: [{ channel_id: a.device.enrollmentId, status: 'not_configured' }] })
      expect(requestsFor(a.token)).toHaveLength(0)
    } finally {
      await off.close()
    }
  })

  it('is in the OpenAPI document', async () => {
    const spec = (await t.app.inject('/api/v1/openapi.json')).json() as { paths: Record<string, Record<string, unknown>> }
    expect(spec.paths['/api/v1/admin/enrollments/{id}/push']?.post).toBeDefined()
  })

  it('never logs a push token or PushMagic', async () => {
    const all = t.logLines.join('\n')
    expect(fake.requests.length).toBeGreaterThan(3)
    for (const r of fake.requests) {
      expect(all).not.toContain(r.token)
      expect(all).not.toContain(JSON.parse(r.body).mdm as string)
    }
  })
})
