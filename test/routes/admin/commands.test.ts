/**
 * The command path through the real app (PROTOCOL.md section 8): an administrator queues a command, the
 * emulated device's Idle gets it as a plist, its result is stored whole and shown by the admin API, and
 * the next Idle is empty. NotNow, repeated and foreign results, macOS channels, expiry, cancelling,
 * Apple's rules per platform, and removal (403 com.apple.unrecognized.device).
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parsePlistDict, type PlistDict } from '../../../src/protocol/plist.js'
import { admin, ADMIN_TOKEN } from '../../helpers/admin.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, type Device } from '../../helpers/device.js'

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
})
afterAll(async () => t.close())

async function enrollmentOf(device: Device): Promise<string> {
  const res = await admin(t.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)
  expect(res.statusCode, res.body).toBe(200)
  return res.json().items[0].id
}

async function queue(enrollment: string, command: Record<string, unknown>) {
  const res = await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, command)
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as { command_uuid: string; status: string }
}

/** What a report answers: the command plist, or null for an empty 200. */
function commandIn(res: { statusCode: number; body: string; headers: Record<string, unknown> }): PlistDict | null {
  expect(res.statusCode, res.body).toBe(200)
  if (res.body === '') return null
  expect(res.headers['content-type']).toMatch(/^application\/xml/)
  return parsePlistDict(res.body)
}

const status = async (uuid: string) => (await admin(t.app, 'GET', `/commands/${uuid}`)).json()

describe('the whole path', () => {
  it('queue -> Idle gets the command -> Acknowledged with a result -> the admin API shows it -> Idle is empty', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const queued = await queue(enrollment, { RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ModelName'] })
    expect(queued.status).toBe('pending')

    const sent = commandIn(await device.idle())
    expect(sent).toEqual({ CommandUUID: queued.command_uuid, Command: { RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ModelName'] } })
    expect((await status(queued.command_uuid)).status).toBe('sent')

    const report = { Status: 'Acknowledged', CommandUUID: queued.command_uuid, QueryResponses: { OSVersion: '18.2.1', ModelName: 'iPhone' }, Blob: new Uint8Array([1, 2, 3]) }
    expect(commandIn(await device.idle(undefined, report))).toBeNull()
    const shown = await status(queued.command_uuid)
    expect(shown).toMatchObject({ status: 'acknowledged', request_type: 'DeviceInformation', deliveries: 1 })
    // The whole report as received, data as Base64.
    expect(shown.result).toMatchObject({ Status: 'Acknowledged', CommandUUID: queued.command_uuid, QueryResponses: { OSVersion: '18.2.1', ModelName: 'iPhone' }, Blob: 'AQID', EnrollmentID: device.enrollmentId })
    expect(commandIn(await device.idle())).toBeNull()
  })

  it('hands out commands first in, first out, one per report', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const a = await queue(enrollment, { RequestType: 'ProfileList' })
    const b = await queue(enrollment, { RequestType: 'SecurityInfo' })
    expect(commandIn(await device.idle())!.CommandUUID).toBe(a.command_uuid)
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: a.command_uuid }))!.CommandUUID).toBe(b.command_uuid)
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: b.command_uuid }))).toBeNull()
  })

  it('keeps an Error report whole, ErrorChain included', async () => {
    const device = await activeDevice(t.app)
    const queued = await queue(await enrollmentOf(device), { RequestType: 'InstalledApplicationList', ManagedAppsOnly: true })
    commandIn(await device.idle())
    const chain = [{ ErrorCode: 12021, ErrorDomain: 'MCMDMErrorDomain', LocalizedDescription: 'Not allowed', USEnglishDescription: 'Not allowed' }]
    commandIn(await device.idle(undefined, { Status: 'Error', CommandUUID: queued.command_uuid, ErrorChain: chain }))
    expect(await status(queued.command_uuid)).toMatchObject({ status: 'error', result: { ErrorChain: chain } })
  })
})

describe('what devices do', () => {
  it('NotNow: not sent again in the same session, sent again once after the next Idle', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const a = await queue(enrollment, { RequestType: 'ProfileList' })
    const b = await queue(enrollment, { RequestType: 'SecurityInfo' })
    expect(commandIn(await device.idle())!.CommandUUID).toBe(a.command_uuid)
    // NotNow for A: the answer is B, not A again.
    expect(commandIn(await device.idle(undefined, { Status: 'NotNow', CommandUUID: a.command_uuid }))!.CommandUUID).toBe(b.command_uuid)
    expect((await status(a.command_uuid)).status).toBe('not_now')
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: b.command_uuid }))).toBeNull()
    // A new session: A once more.
    expect(commandIn(await device.idle())!.CommandUUID).toBe(a.command_uuid)
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: a.command_uuid }))).toBeNull()
    expect(await status(a.command_uuid)).toMatchObject({ status: 'acknowledged', deliveries: 2 })
  })

  it('a repeated result is stored once; the first one stands', async () => {
    const device = await activeDevice(t.app)
    const queued = await queue(await enrollmentOf(device), { RequestType: 'ProfileList' })
    commandIn(await device.idle())
    commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: queued.command_uuid, ProfileList: [] }))
    const first = await status(queued.command_uuid)
    commandIn(await device.idle(undefined, { Status: 'Error', CommandUUID: queued.command_uuid }))
    commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: queued.command_uuid, ProfileList: [{ PayloadIdentifier: 'x' }] }))
    expect(await status(queued.command_uuid)).toEqual(first)
  })

  it('a result for an unknown CommandUUID or another device\'s command changes nothing', async () => {
    const a = await activeDevice(t.app)
    const b = await activeDevice(t.app)
    const queued = await queue(await enrollmentOf(a), { RequestType: 'ProfileList' })
    const before = await status(queued.command_uuid)
    for (const uuid of [queued.command_uuid, randomUUID()]) {
      expect(commandIn(await b.idle(undefined, { Status: 'Acknowledged', CommandUUID: uuid }))).toBeNull()
    }
    expect(await status(queued.command_uuid)).toEqual(before)
    // A's own Idle still gets it.
    expect(commandIn(await a.idle())!.CommandUUID).toBe(queued.command_uuid)
  })

  it('a result for the channel\'s own command before it was sent is stored, and that command is not the next one handed out', async () => {
    // The result and the next command are one statement (storage/commands.ts): the reported command must
    // never come back as the next even while it was still pending.
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const first = await queue(enrollment, { RequestType: 'ProfileList' })
    const second = await queue(enrollment, { RequestType: 'SecurityInfo' })
    const next = commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: first.command_uuid, ProfileList: [] }))
    expect(next!.CommandUUID).toBe(second.command_uuid)
    expect((await status(first.command_uuid)).status).toBe('acknowledged')
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: second.command_uuid }))).toBeNull()
    expect(commandIn(await device.idle())).toBeNull()
  })

  it('a command sent and never reported on is sent again when the next session starts', async () => {
    const device = await activeDevice(t.app)
    const queued = await queue(await enrollmentOf(device), { RequestType: 'ProfileList' })
    expect(commandIn(await device.idle())!.CommandUUID).toBe(queued.command_uuid)
    expect(commandIn(await device.idle())!.CommandUUID).toBe(queued.command_uuid)
    expect((await status(queued.command_uuid)).deliveries).toBe(2)
  })

  it('a Mac\'s device and user channels have their own queues', async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const USER = 'A1B2C3D4-0000-4000-8000-000000000001'
    expect((await mac.tokenUpdate(undefined, { EnrollmentUserID: USER, UserShortName: 'alice', Token: new Uint8Array([7, 7]), PushMagic: 'U' })).statusCode).toBe(200)
    const enrollment = await enrollmentOf(mac)
    const forDevice = await queue(enrollment, { RequestType: 'ProfileList' })
    const forUser = await queue(enrollment, { RequestType: 'ProfileList', channel: 'user' })
    expect((await status(forUser.command_uuid)).channel).toBe(`${mac.enrollmentId}:${USER}`)
    expect(commandIn(await mac.idle({ token: null }))!.CommandUUID).toBe(forDevice.command_uuid)
    expect(commandIn(await mac.idle(undefined, { EnrollmentUserID: USER }))!.CommandUUID).toBe(forUser.command_uuid)
    // The user channel's result does not end the device channel's command.
    commandIn(await mac.idle(undefined, { EnrollmentUserID: USER, Status: 'Acknowledged', CommandUUID: forDevice.command_uuid }))
    expect((await status(forDevice.command_uuid)).status).toBe('sent')
  })
})

describe('the admin API', () => {
  it('refuses what Apple\'s schema forbids for the target, naming the rule; nothing is queued', async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const phone = await activeDevice(t.app)
    const before = (await admin(t.app, 'GET', '/commands?limit=500')).json().items.length
    for (const [device, command, rule] of [
      [mac, { RequestType: 'EraseDevice' }, /EraseDevice.*user enrollment.*macOS/i],
      [mac, { RequestType: 'DeviceLock' }, /DeviceLock.*macOS/],
      [phone, { RequestType: 'InstallApplication', iTunesStoreID: 1, ChangeManagementState: 'Managed' }, /ChangeManagementState/],
      [phone, { RequestType: 'NoSuchCommand' }, /not a command in Apple's schema/],
    ] as const) {
      const res = await admin(t.app, 'POST', `/enrollments/${await enrollmentOf(device)}/commands`, command)
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json()).toMatchObject({ error: 'command_not_allowed' })
      expect(res.json().message).toMatch(rule)
    }
    expect((await admin(t.app, 'GET', '/commands?limit=500')).json().items.length).toBe(before)
  })

  it('answers invalid bodies with 400 and the reason, unknown ids with 404', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    for (const body of [{}, { RequestType: '' }, { RequestType: 'ProfileList', expires_at: 'tomorrow' }, { RequestType: 'ProfileList', Bad: null }, { RequestType: 'InstallProfile', Payload: { $data: '***' } }]) {
      const res = await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json().message).toBeTruthy()
    }
    expect((await admin(t.app, 'POST', `/enrollments/${randomUUID()}/commands`, { RequestType: 'ProfileList' })).statusCode).toBe(404)
    expect((await admin(t.app, 'POST', '/enrollments/not-a-uuid/commands', { RequestType: 'ProfileList' })).statusCode).toBe(400)
    expect((await admin(t.app, 'GET', `/commands/${randomUUID()}`)).statusCode).toBe(404)
  })

  it('sends plist data and dates written as {"$data"} and {"$date"}', async () => {
    const device = await activeDevice(t.app)
    const profile = Buffer.from('<?xml version="1.0"?><plist version="1.0"><dict/></plist>')
    await queue(await enrollmentOf(device), { RequestType: 'InstallProfile', Payload: { $data: profile.toString('base64') } })
    const sent = commandIn(await device.idle())!
    expect(Buffer.from((sent.Command as PlistDict).Payload as Uint8Array).equals(profile)).toBe(true)
  })

  it('queues one command for many enrollments, all or none', async () => {
    const [a, b] = [await activeDevice(t.app), await activeDevice(t.app)]
    const ids = [await enrollmentOf(a), await enrollmentOf(b)]
    const res = await admin(t.app, 'POST', '/commands', { enrollment_ids: ids, command: { RequestType: 'SecurityInfo' } })
    expect(res.statusCode, res.body).toBe(201)
    const items = res.json().items as { enrollment_id: string; command_uuid: string }[]
    expect(items.map((i) => i.enrollment_id).sort()).toEqual([...ids].sort())
    expect(new Set(items.map((i) => i.command_uuid)).size).toBe(2)
    const none = await admin(t.app, 'POST', '/commands', { enrollment_ids: [ids[0], randomUUID()], command: { RequestType: 'SecurityInfo' } })
    expect(none.statusCode).toBe(404)
    expect((await admin(t.app, 'GET', `/commands?enrollment_id=${ids[0]}`)).json().items).toHaveLength(1)
  })

  it('cancels a pending command (never sent); one already sent is 409', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const sent = await queue(enrollment, { RequestType: 'ProfileList' })
    const pending = await queue(enrollment, { RequestType: 'SecurityInfo' })
    commandIn(await device.idle())
    expect((await admin(t.app, 'DELETE', `/commands/${sent.command_uuid}`)).statusCode).toBe(409)
    const cancelled = await admin(t.app, 'DELETE', `/commands/${pending.command_uuid}`)
    expect(cancelled.statusCode).toBe(200)
    expect(cancelled.json().status).toBe('cancelled')
    commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: sent.command_uuid }))
    expect(commandIn(await device.idle())).toBeNull()
  })

  it('an expired command is never sent and shows expired', async () => {
    const device = await activeDevice(t.app)
    const queued = await queue(await enrollmentOf(device), { RequestType: 'ProfileList', expires_at: new Date(Date.now() + 1500).toISOString() })
    await new Promise((r) => setTimeout(r, 1600))
    expect(commandIn(await device.idle())).toBeNull()
    expect((await status(queued.command_uuid)).status).toBe('expired')
  })

  it('lists commands newest first with a cursor, filtered by enrollment, status and RequestType', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const uuids: string[] = []
    for (let i = 0; i < 5; i++) uuids.push((await queue(enrollment, { RequestType: i % 2 ? 'ProfileList' : 'SecurityInfo' })).command_uuid)
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await admin(t.app, 'GET', `/commands?enrollment_id=${enrollment}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.statusCode).toBe(200)
      seen.push(...res.json().items.map((i: { command_uuid: string }) => i.command_uuid))
      cursor = res.json().next_cursor
    } while (cursor)
    expect(seen).toEqual([...uuids].reverse())
    expect((await admin(t.app, 'GET', `/commands?enrollment_id=${enrollment}&request_type=ProfileList`)).json().items).toHaveLength(2)
    expect((await admin(t.app, 'GET', `/commands?enrollment_id=${enrollment}&status=pending`)).json().items).toHaveLength(5)
    expect((await admin(t.app, 'GET', '/commands?cursor=garbage')).statusCode).toBe(400)
  })
})

describe('removing an enrollment', () => {
  it('cancels its commands; its next request is 403 com.apple.unrecognized.device; CheckOut is still 200', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const queued = await queue(enrollment, { RequestType: 'ProfileList' })
    const removed = await admin(t.app, 'DELETE', `/enrollments/${enrollment}`)
    expect(removed.statusCode, removed.body).toBe(200)
    expect(removed.json()).toMatchObject({ status: 'removed' })
    expect((await status(queued.command_uuid)).status).toBe('cancelled')
    for (const res of [await device.idle(), await device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'tokens' })), await device.tokenUpdate()]) {
      expect(res.statusCode).toBe(403)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(res.json()).toEqual({ code: 'com.apple.unrecognized.device' })
    }
    expect((await admin(t.app, 'DELETE', `/enrollments/${enrollment}`)).statusCode).toBe(409)
    expect((await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, { RequestType: 'ProfileList' })).statusCode).toBe(409)
    expect((await device.checkOut()).statusCode).toBe(200)
    const log = t.logs().find((l) => l.msg === 'admin: enrollment.remove')
    expect(log?.admin).toMatchObject({ enrollmentId: enrollment })
  })

  it('stale enrollments (not seen for STALE_AFTER) are listed and removed together', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    await t.app.db.prisma.mdmEnrollment.update({ where: { id: enrollment }, data: { lastSeenAt: new Date(Date.now() - 31 * 86400_000) } })
    const stale = (await admin(t.app, 'GET', '/enrollments?status=stale')).json().items as { id: string; stale: boolean }[]
    expect(stale.map((e) => e.id)).toContain(enrollment)
    expect(stale.every((e) => e.stale)).toBe(true)
    const res = await admin(t.app, 'POST', '/enrollments/remove-stale')
    expect(res.statusCode).toBe(200)
    expect(res.json().removed).toContain(enrollment)
    expect((await device.idle()).json()).toEqual({ code: 'com.apple.unrecognized.device' })
  })

  it('shows the device, its channels and push state', async () => {
    const mac = await activeDevice(t.app, { mac: true })
    const view = (await admin(t.app, 'GET', `/enrollments/${await enrollmentOf(mac)}`)).json()
    expect(view).toMatchObject({
      enrollment_id: mac.enrollmentId,
      status: 'active',
      enrollment_type: 'user',
      device: { product_name: 'MacBookPro18,3', os_version: '15.1', device_name: 'Alice’s MacBook Pro', model_name: 'MacBook Pro' },
      user: { id: mac.user.userId },
      channels: [{ channel_id: mac.enrollmentId, type: 'device', push: { has_token: true } }],
    })
  })
})

describe('concurrency', () => {
  it('two sessions of one device on two server processes at once: no command twice in a session, none lost, each result once', async () => {
    const second = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN }, database: t.database })
    try {
      const device = await activeDevice(t.app)
      const enrollment = await enrollmentOf(device)
      const queued = new Set<string>()
      for (let i = 0; i < 6; i++) queued.add((await queue(enrollment, { RequestType: 'ProfileList' })).command_uuid)
      const other = new (device.constructor as typeof Device)(second.app, device.keys, device.certificate, device.user, device.topic, device.path, device.enrollmentId, device.token)
      /** A session: Idle, then acknowledge each command until the server has none. */
      const session = async (d: Device) => {
        const got: string[] = []
        for (let cmd = commandIn(await d.idle()); cmd; cmd = commandIn(await d.idle(undefined, { Status: 'Acknowledged', CommandUUID: cmd.CommandUUID as string }))) {
          got.push(cmd.CommandUUID as string)
        }
        return got
      }
      const [one, two] = await Promise.all([session(device), session(other)])
      expect(new Set(one).size, JSON.stringify(one)).toBe(one.length)
      expect(new Set(two).size, JSON.stringify(two)).toBe(two.length)
      expect(new Set([...one, ...two])).toEqual(queued)
      for (const uuid of queued) expect(await status(uuid)).toMatchObject({ status: 'acknowledged', result: { CommandUUID: uuid } })
    } finally {
      await second.app.close()
    }
  })

  it('many reports at once share statements (storage/batch.ts): each result on its own command, each device its own next command', async () => {
    const devices = await Promise.all(Array.from({ length: 8 }, () => activeDevice(t.app)))
    const queues: { first: string; second: string }[] = []
    for (const device of devices) {
      const enrollment = await enrollmentOf(device)
      queues.push({ first: (await queue(enrollment, { RequestType: 'ProfileList' })).command_uuid, second: (await queue(enrollment, { RequestType: 'SecurityInfo' })).command_uuid })
    }
    for (const [i, device] of devices.entries()) expect(commandIn(await device.idle())!.CommandUUID).toBe(queues[i]!.first)
    const ack = (i: number) => devices[i]!.idle(undefined, { Status: 'Acknowledged', CommandUUID: queues[i]!.first, ProfileList: [{ PayloadIdentifier: `device ${i}` }] })
    // More reports than may run at once; the first device reports twice (its answer lost, say): two
    // reports on one channel never share a statement, the second finds the result stored.
    const answers = await Promise.all([...devices.keys(), 0].map(ack))
    for (const [i, res] of answers.slice(0, devices.length).entries()) {
      if (i === 0) continue
      expect(commandIn(res)!.CommandUUID).toBe(queues[i]!.second)
      expect(await status(queues[i]!.first)).toMatchObject({ status: 'acknowledged', result: { ProfileList: [{ PayloadIdentifier: `device ${i}` }] } })
      expect((await status(queues[i]!.second)).status).toBe('sent')
    }
    // The first device: one of its two reports got the next command, the other nothing (within a session a command goes out once).
    const firsts = [answers[0]!, answers.at(-1)!].map((res) => commandIn(res)?.CommandUUID ?? null)
    expect(firsts.sort()).toEqual([null, queues[0]!.second].sort())
    expect(await status(queues[0]!.first)).toMatchObject({ status: 'acknowledged', deliveries: 1, result: { ProfileList: [{ PayloadIdentifier: 'device 0' }] } })
  })

  it('a command taken by a session that never reported it comes back in the next session, nothing lost', async () => {
    const device = await activeDevice(t.app)
    const enrollment = await enrollmentOf(device)
    const a = await queue(enrollment, { RequestType: 'ProfileList' })
    const b = await queue(enrollment, { RequestType: 'SecurityInfo' })
    expect(commandIn(await device.idle())!.CommandUUID).toBe(a.command_uuid)
    // The answer to A was lost; the device's next session starts with Idle.
    expect(commandIn(await device.idle())!.CommandUUID).toBe(a.command_uuid)
    expect(commandIn(await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: a.command_uuid }))!.CommandUUID).toBe(b.command_uuid)
  })
})

