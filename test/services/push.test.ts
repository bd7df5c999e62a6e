/**
 * The push service (src/services/push.ts) through the real app: devices enrolled through the real
 * endpoints, pushes to the in-process fake APNs over HTTP/2 + TLS with the configured push identity.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/config/index.js'
import { createPushService, describePush, PUSH_COALESCE_MS, type PushLogger } from '../../src/services/push.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice } from '../helpers/device.js'
import { startFakeApns, type FakeApns, type PushIdentityFixture } from '../helpers/fake-apns.js'
import { fixtureText } from '../helpers/fixtures.js'
import { apnsEnv, deviceChannel, pushableDevice } from '../helpers/push.js'

const DAY = 86_400_000
const FAST_RETRY = { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 }

let fake: FakeApns
let identity: PushIdentityFixture
let t: TestApp

beforeAll(async () => {
  fake = await startFakeApns()
  identity = await fake.issuePushIdentity()
  t = await buildTestApp({ env: apnsEnv(fake, identity) })
}, 60_000)
afterAll(async () => {
  await t?.close()
  await fake?.close()
})

const requestsFor = (token: string) => fake.requests.filter((r) => r.token === token)
const channelRow = (id: string) => t.app.db.prisma.mdmChannel.findUniqueOrThrow({ where: { id } })
const pushLines = (app: TestApp, channel: string) => app.logs().filter((l) => (l.push as { channel?: string } | undefined)?.channel === channel)

async function notified(app: TestApp, ids: string[]): Promise<void> {
  app.app.services.push.notify(ids)
  await app.app.services.push.idle()
}

/** The recorded TokenUpdate's Token and PushMagic, which activeDevice sends. */
function recordedTokenUpdate(): { token: string; pushMagic: string } {
  const text = fixtureText('checkin.token-update.ios18.plist')
  const base64 = /<key>Token<\/key>\s*<data>\s*([^<]+?)\s*<\/data>/.exec(text)![1]!
  const pushMagic = /<key>PushMagic<\/key>\s*<string>([^<]+)<\/string>/.exec(text)![1]!
  return { token: Buffer.from(base64, 'base64').toString('hex'), pushMagic }
}

describe('delivery', () => {
  it("pushes {\"mdm\": PushMagic} to the TokenUpdate's token on the profile's topic, which is the certificate's", async () => {
    expect(t.app.services.push.configured).toBe(true)
    const device = await activeDevice(t.app)
    // With credentials set, the enrollment profile's Topic is the push certificate's.
    expect(device.topic).toBe(identity.topic)
    const { token, pushMagic } = recordedTokenUpdate()
    const { channel } = await deviceChannel(t.app, device)
    expect(channel.pushToken).toBe(token)

    await notified(t, [channel.id])

    const requests = requestsFor(token)
    expect(requests).toHaveLength(1)
    const [req] = requests
    expect(req).toMatchObject({ method: 'POST', path: `/3/device/${token}`, body: `{"mdm":"${pushMagic}"}`, clientUid: identity.topic, status: 200 })
    expect(req!.headers).toMatchObject({ 'apns-topic': device.topic, 'apns-push-type': 'mdm', 'apns-priority': '10' })
    expect(Number(req!.headers['apns-expiration'])).toBeGreaterThan(Date.now() / 1000)

    const row = await channelRow(channel.id)
    expect(row).toMatchObject({ pushStatus: 'delivered', pushError: null, pushTokenInvalidAt: null })
    expect(row.pushStatusAt).toBeInstanceOf(Date)
    const lines = pushLines(t, channel.id)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 30, msg: 'push delivered', push: { outcome: 'delivered', attempt: 1 } })
    expect((lines[0]!.push as { apnsId: string }).apnsId).toMatch(/^[0-9A-F-]{36}$/)
  })

  it('reuses one HTTP/2 connection for every push', async () => {
    const before = fake.connections
    const a = await pushableDevice(t.app)
    const b = await pushableDevice(t.app)
    await notified(t, [(await deviceChannel(t.app, a.device)).channel.id])
    await notified(t, [(await deviceChannel(t.app, b.device)).channel.id])
    expect(requestsFor(a.token)).toHaveLength(1)
    expect(requestsFor(b.token)).toHaveLength(1)
    expect(fake.connections - before).toBeLessThanOrEqual(1)
    expect(requestsFor(a.token)[0]!.connection).toBe(requestsFor(b.token)[0]!.connection)
  })

  it('returns at once and never throws, whatever it is given', async () => {
    const push = t.app.services.push
    expect(push.notify(['not-a-uuid', '00000000-0000-4000-8000-000000000000'])).toBeUndefined()
    await push.idle()
    expect(t.logs().some((l) => l.msg === 'push failed')).toBe(true)
  })
})

describe('coalescing', () => {
  it(`sends one push for 20 notify() calls within ${PUSH_COALESCE_MS} ms, one per channel for two channels`, async () => {
    const a = await pushableDevice(t.app)
    const b = await pushableDevice(t.app)
    const ca = (await deviceChannel(t.app, a.device)).channel.id
    const cb = (await deviceChannel(t.app, b.device)).channel.id
    for (let i = 0; i < 20; i++) t.app.services.push.notify([ca])
    await t.app.services.push.idle()
    expect(requestsFor(a.token)).toHaveLength(1)

    for (let i = 0; i < 10; i++) t.app.services.push.notify(i % 2 ? [ca, cb] : [cb])
    await t.app.services.push.idle()
    expect(requestsFor(a.token)).toHaveLength(2)
    expect(requestsFor(b.token)).toHaveLength(1)
  })

  it('pushes once more after a push that was under way when notified again', async () => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, [{ status: 503, reason: 'ServiceUnavailable' }])
    t.app.services.push.notify([id])
    // Wait for the first try (503): the push is now backing off before its retry.
    while (requestsFor(a.token).length === 0) await new Promise((r) => setTimeout(r, 10))
    t.app.services.push.notify([id])
    t.app.services.push.notify([id])
    await t.app.services.push.idle()
    expect(requestsFor(a.token).map((r) => r.status)).toEqual([503, 200, 200])
  })
})

describe('APNs answers', () => {
  it.each([
    [410, 'Unregistered'],
    [400, 'BadDeviceToken'],
  ])('%i %s marks the token invalid: no push until the next TokenUpdate', async (status, reason) => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, [{ status, reason, ...(status === 410 ? { timestamp: Date.now() } : {}) }])
    await notified(t, [id])
    expect(requestsFor(a.token)).toHaveLength(1)
    let row = await channelRow(id)
    expect(row).toMatchObject({ pushStatus: 'invalid_token', pushError: reason })
    expect(row.pushTokenInvalidAt).toBeInstanceOf(Date)

    await notified(t, [id])
    expect(requestsFor(a.token)).toHaveLength(1)

    // The device sends TokenUpdate (at its next start, or when the token changes): pushes resume.
    await a.tokenUpdate()
    expect((await channelRow(id)).pushTokenInvalidAt).toBeNull()
    await notified(t, [id])
    expect(requestsFor(a.token)).toHaveLength(2)
    row = await channelRow(id)
    expect(row).toMatchObject({ pushStatus: 'delivered', pushError: null, pushTokenInvalidAt: null })
  })

  it.each([
    [503, 'ServiceUnavailable'],
    [429, 'TooManyRequests'],
    [500, 'InternalServerError'],
  ])('%i %s is retried with backoff, then delivered', async (status, reason) => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, [{ status, reason }])
    await notified(t, [id])
    expect(requestsFor(a.token).map((r) => r.status)).toEqual([status, 200])
    expect(await channelRow(id)).toMatchObject({ pushStatus: 'delivered', pushError: null, pushTokenInvalidAt: null })
    const lines = pushLines(t, id)
    expect(lines.map((l) => (l.push as { outcome: string }).outcome)).toEqual(['retrying', 'delivered'])
    expect(lines[0]).toMatchObject({ level: 40, push: { reason, httpStatus: status, attempt: 1 } })
  })

  it('records a refusal that retrying cannot fix, and the reason', async () => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, [{ status: 400, reason: 'BadMessageId' }])
    await notified(t, [id])
    expect(requestsFor(a.token)).toHaveLength(1)
    expect(await channelRow(id)).toMatchObject({ pushStatus: 'error', pushError: 'BadMessageId', pushTokenInvalidAt: null })
  })

  it('gives up after the last try and records error with the reason', async () => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, Array.from({ length: FAST_RETRY.attempts }, () => ({ status: 503, reason: 'ServiceUnavailable' })))
    const lines: { obj: object; msg: string }[] = []
    const log: PushLogger = { debug: () => {}, info: (obj, msg) => lines.push({ obj, msg }), warn: (obj, msg) => lines.push({ obj, msg }), error: (obj, msg) => lines.push({ obj, msg }) }
    const push = createPushService({ db: t.app.db.prisma, config: t.config, log, retry: FAST_RETRY })
    try {
      push.notify([id])
      await push.idle()
    } finally {
      await push.close()
    }
    expect(requestsFor(a.token)).toHaveLength(FAST_RETRY.attempts)
    expect(await channelRow(id)).toMatchObject({ pushStatus: 'error', pushError: 'ServiceUnavailable' })
    expect(lines.map((l) => l.msg)).toEqual(['push retrying', 'push retrying', `push error: gave up after ${FAST_RETRY.attempts} tries`])
  })

  it('close() ends a backoff at once and closes the connection', async () => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    fake.respond(a.token, [{ status: 503, reason: 'ServiceUnavailable' }])
    const silent: PushLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
    const push = createPushService({ db: t.app.db.prisma, config: t.config, log: silent, retry: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 } })
    push.notify([id])
    while ((await channelRow(id)).pushStatus !== 'retrying') await new Promise((r) => setTimeout(r, 10))
    const started = Date.now()
    await push.close()
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(requestsFor(a.token)).toHaveLength(1)
    push.notify([id])
    await push.idle()
    expect(requestsFor(a.token)).toHaveLength(1)
  })
})

describe('what is not pushed', () => {
  it('a checked-out enrollment: its channels lost their token', async () => {
    const a = await pushableDevice(t.app)
    const id = (await deviceChannel(t.app, a.device)).channel.id
    expect((await a.device.checkOut()).statusCode).toBe(200)
    await notified(t, [id])
    expect(requestsFor(a.token)).toHaveLength(0)
  })

  it('(a removed enrollment is pushed: its device comes back to be told to unenroll)', async () => {
    const a = await pushableDevice(t.app)
    const { enrollment, channel } = await deviceChannel(t.app, a.device)
    await t.app.db.prisma.mdmEnrollment.update({ where: { id: enrollment.id }, data: { status: 'removed', removedAt: new Date() } })
    await notified(t, [channel.id])
    expect(requestsFor(a.token)).toHaveLength(1)
    expect((await a.device.idle()).json()).toEqual({ code: 'com.apple.unrecognized.device' })
  })

  it('a channel enrolled under another topic: recorded, APNs not asked', async () => {
    const a = await pushableDevice(t.app)
    const { channel } = await deviceChannel(t.app, a.device)
    await t.app.db.prisma.mdmChannel.update({ where: { id: channel.id }, data: { topic: 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000' } })
    await notified(t, [channel.id])
    expect(requestsFor(a.token)).toHaveLength(0)
    expect(await channelRow(channel.id)).toMatchObject({ pushStatus: 'error', pushError: 'TopicMismatch' })
  })
})

describe('credentials', () => {
  it('PKCS#12 (APNS_P12 as a file path + APNS_P12_PASSWORD) pushes like PEM', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'byod-mdm-p12-')), 'push.p12')
    writeFileSync(file, identity.p12)
    const p12 = await buildTestApp({ env: { APNS_URL: fake.url, APNS_P12: file, APNS_P12_PASSWORD: identity.password, APNS_CA: fake.caPem } })
    try {
      expect(p12.app.services.push.configured).toBe(true)
      const a = await pushableDevice(p12.app)
      expect(a.device.topic).toBe(identity.topic)
      await notified(p12, [(await deviceChannel(p12.app, a.device)).channel.id])
      expect(requestsFor(a.token)).toMatchObject([{ status: 200, clientUid: identity.topic, body: `{"mdm":"${a.pushMagic}"}` }])
    } finally {
      await p12.close()
    }
  })

  it('a wrong PKCS#12 password stops the app at start, naming APNS_P12_PASSWORD', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'byod-mdm-p12-')), 'push.p12')
    writeFileSync(file, identity.p12)
    const err = await buildTestApp({ env: { APNS_P12: file, APNS_P12_PASSWORD: 'wrong', APNS_CA: fake.caPem }, database: t.database }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err).toMatchObject({ variable: 'APNS_P12_PASSWORD' })
  })

  it('an APNS_TOPIC other than the certificate topic stops the app at start, naming APNS_TOPIC', async () => {
    const err = await buildTestApp({ env: { ...apnsEnv(fake, identity), APNS_TOPIC: 'com.apple.mgmt.External.other' }, database: t.database }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err).toMatchObject({ variable: 'APNS_TOPIC' })
  })

  it('APNS_CA must hold a certificate', async () => {
    const err = await buildTestApp({ env: { ...apnsEnv(fake, identity), APNS_CA: identity.keyPem }, database: t.database }).catch((e: unknown) => e)
    expect(err).toMatchObject({ variable: 'APNS_CA' })
  })

  it('without APNS_CA the fake is not trusted: config_error TlsRejected, recorded and logged as an error', async () => {
    const { APNS_CA: _, ...env } = apnsEnv(fake, identity)
    const untrusting = await buildTestApp({ env, database: t.database })
    try {
      const a = await pushableDevice(untrusting.app)
      const id = (await deviceChannel(untrusting.app, a.device)).channel.id
      await notified(untrusting, [id])
      expect(requestsFor(a.token)).toHaveLength(0)
      expect(await channelRow(id)).toMatchObject({ pushStatus: 'config_error', pushError: 'TlsRejected' })
      expect(pushLines(untrusting, id)).toMatchObject([{ level: 50, push: { outcome: 'config_error', reason: 'TlsRejected' } }])
    } finally {
      await untrusting.close()
    }
  })

  it('an expired certificate: the app starts, warns, and pushes record config_error without contacting APNs', async () => {
    const expired = await fake.issuePushIdentity({ notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) })
    const app = await buildTestApp({ env: apnsEnv(fake, expired), database: t.database })
    try {
      expect(app.logs()).toContainEqual(expect.objectContaining({ level: 40, msg: expect.stringMatching(/^The APNs push certificate expired on \d{4}-\d\d-\d\d: APNs refuses every push/) }))
      const a = await pushableDevice(app.app)
      const id = (await deviceChannel(app.app, a.device)).channel.id
      await notified(app, [id])
      expect(requestsFor(a.token)).toHaveLength(0)
      expect(await channelRow(id)).toMatchObject({ pushStatus: 'config_error', pushError: 'CertificateExpired' })
    } finally {
      await app.close()
    }
  })

  it('without credentials the app starts, is not configured, and notify does nothing', async () => {
    const off = await buildTestApp({ database: t.database })
    try {
      expect(off.app.services.push.configured).toBe(false)
      expect(off.logs()).toContainEqual(expect.objectContaining({ msg: expect.stringMatching(/^push not configured: commands wait for each device's next check-in/) }))
      const a = await pushableDevice(off.app)
      const id = (await deviceChannel(off.app, a.device)).channel.id
      await notified(off, [id])
      expect(requestsFor(a.token)).toHaveLength(0)
      expect((await channelRow(id)).pushStatus).toBeNull()
    } finally {
      await off.close()
    }
  })
})

describe('start-up banner', () => {
  const creds = (notAfter: Date) => ({ ...t.config.apns.credentials!, notAfter })
  const url = 'https://api.push.apple.com'

  it('names the host, topic and expiry; warns within 30 days and after expiry', () => {
    const now = new Date('2027-01-01T00:00:00Z')
    expect(describePush({ url, credentials: creds(new Date('2027-06-01T00:00:00Z')) }, now)).toEqual({
      line: `Push (APNs)         api.push.apple.com topic ${identity.topic}, certificate expires 2027-06-01`,
    })
    expect(describePush({ url, credentials: creds(new Date('2027-01-21T00:00:00Z')) }, now).warning).toMatch(/^The APNs push certificate expires in 20 days \(2027-01-21\); renew it at https:\/\/identity\.apple\.com/)
    expect(describePush({ url, credentials: creds(new Date('2026-12-01T00:00:00Z')) }, now).warning).toMatch(/^The APNs push certificate expired on 2026-12-01/)
    expect(describePush({ url, credentials: null }, now)).toEqual({ line: "Push (APNs)         not configured: commands wait for each device's next check-in; set APNS_CERT/APNS_KEY or APNS_P12" })
  })
})

describe('logs', () => {
  it('never carry a push token or PushMagic', async () => {
    const { token, pushMagic } = recordedTokenUpdate()
    const all = t.logLines.join('\n')
    expect(t.logs().filter((l) => l.push).length).toBeGreaterThan(10)
    for (const secret of [token, token.toUpperCase(), Buffer.from(token, 'hex').toString('base64'), pushMagic]) expect(all).not.toContain(secret)
    for (const r of fake.requests) {
      expect(all).not.toContain(r.token)
      expect(all).not.toContain(JSON.parse(r.body).mdm as string)
    }
  })
})
