/**
 * Results stored in shared statements (storage/commands.ts storeResult): reports that wait together go in
 * one statement, except two on one channel, which go one after the other, so that the second sees what
 * the first did. Against the real database, through a Sql that runs one statement at a time, so that the
 * reports queue behind each other as they do on a busy server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Sql } from '../../src/storage/database.js'
import { storeResult } from '../../src/storage/commands.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { hasPostgres, withClient } from '../helpers/database.js'
import { activeDevice } from '../helpers/device.js'

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
}, 60_000)
afterAll(async () => t?.close())

/** The app's database as a Sql of its own, so its reports queue in a batcher of their own (one statement at a time). */
const oneAtATime = (): Sql => ({ query: (statement, values) => t.app.db.sql.query(statement, values) })

async function deviceWithCommands(count: number) {
  const device = await activeDevice(t.app)
  const enrollment = (await admin(t.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0].id as string
  const uuids: string[] = []
  for (let i = 0; i < count; i++) uuids.push((await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, { RequestType: 'ProfileList' })).json().command_uuid)
  const channel = await t.app.db.prisma.mdmChannel.findFirstOrThrow({ where: { mdmEnrollmentId: enrollment, enrollmentUserId: null } })
  return { device, channel: channel.id, uuids }
}

describe('storeResult', () => {
  it('stores the reports of several channels in one statement, each with its own next command', async () => {
    const a = await deviceWithCommands(2)
    const b = await deviceWithCommands(2)
    for (const d of [a, b]) await d.device.idle()
    const sql = oneAtATime()
    const now = new Date()
    const busy = storeResult(sql, a.channel, 'NOT-A-COMMAND', 'acknowledged', {}, now, false)
    const [fromA, fromB] = await Promise.all([
      storeResult(sql, a.channel, a.uuids[0]!, 'acknowledged', { from: 'a' }, now, true),
      storeResult(sql, b.channel, b.uuids[0]!, 'error', { from: 'b' }, now, true),
    ])
    expect(await busy).toEqual({ outcome: 'unknown', next: null })
    expect(fromA).toMatchObject({ outcome: 'stored', next: { commandUuid: a.uuids[1] } })
    expect(fromB).toMatchObject({ outcome: 'stored', next: { commandUuid: b.uuids[1] } })
    const rows = await t.app.db.prisma.mdmCommand.findMany({ where: { commandUuid: { in: [...a.uuids, ...b.uuids] } } })
    const byUuid = new Map(rows.map((r) => [r.commandUuid, r]))
    expect(byUuid.get(a.uuids[0]!)).toMatchObject({ status: 'acknowledged', result: { from: 'a' } })
    expect(byUuid.get(b.uuids[0]!)).toMatchObject({ status: 'error', result: { from: 'b' } })
    for (const d of [a, b]) expect(byUuid.get(d.uuids[1]!)).toMatchObject({ status: 'sent', deliveries: 1 })
  })

  it('two reports on one channel waiting together: the first stores and takes the next, the second is a duplicate and takes the one after', async () => {
    const d = await deviceWithCommands(3)
    await d.device.idle()
    const sql = oneAtATime()
    const now = new Date()
    const busy = storeResult(sql, d.channel, 'NOT-A-COMMAND', 'acknowledged', {}, now, false)
    const [first, second] = await Promise.all([
      storeResult(sql, d.channel, d.uuids[0]!, 'acknowledged', { report: 1 }, now, true),
      storeResult(sql, d.channel, d.uuids[0]!, 'acknowledged', { report: 2 }, now, true),
    ])
    await busy
    expect(first).toMatchObject({ outcome: 'stored', next: { commandUuid: d.uuids[1] } })
    expect(second).toMatchObject({ outcome: 'duplicate', next: { commandUuid: d.uuids[2] } })
    const stored = await t.app.db.prisma.mdmCommand.findUniqueOrThrow({ where: { commandUuid: d.uuids[0]! } })
    expect(stored).toMatchObject({ status: 'acknowledged', result: { report: 1 } })
  })

  it('takes a CommandUUID with array-literal characters as plain text (the reports travel as arrays)', async () => {
    const d = await deviceWithCommands(1)
    await d.device.idle()
    const sql = oneAtATime()
    const hostile = ['NULL', 'a"b', 'c\\d', '{e,f}', ' g ', "h'i", `${d.uuids[0]}"`]
    const outcomes = await Promise.all(hostile.map((uuid) => storeResult(sql, d.channel, uuid, 'acknowledged', { uuid }, new Date(), true)))
    expect(outcomes.map((o) => o.outcome)).toEqual(hostile.map(() => 'unknown'))
    // Seven reports on one channel: seven statements one after the other. The real command is untouched.
    expect((await t.app.db.prisma.mdmCommand.findUniqueOrThrow({ where: { commandUuid: d.uuids[0]! } })).status).toBe('sent')
  })

  it('the database keeps status and end time in agreement (the queue index says "open" with the end times)', async () => {
    const d = await deviceWithCommands(1)
    const prisma = t.app.db.prisma
    const where = { commandUuid: d.uuids[0]! }
    await expect(prisma.mdmCommand.update({ where, data: { status: 'acknowledged' } })).rejects.toThrow(/mdm_commands_open_check/)
    await expect(prisma.mdmCommand.update({ where, data: { completedAt: new Date() } })).rejects.toThrow(/mdm_commands_open_check/)
    await expect(prisma.mdmCommand.update({ where, data: { status: 'sent', cancelledAt: new Date() } })).rejects.toThrow(/mdm_commands_open_check/)
    expect(await prisma.mdmCommand.findUniqueOrThrow({ where })).toMatchObject({ status: 'pending', completedAt: null, cancelledAt: null })
    await prisma.mdmCommand.update({ where, data: { status: 'cancelled', cancelledAt: new Date() } })
  })

  it.runIf(hasPostgres)('a statement rolled back by a deadlock with another transaction is retried report by report; both results are stored', async () => {
    const a = await deviceWithCommands(1)
    const b = await deviceWithCommands(1)
    for (const d of [a, b]) await d.device.idle()
    const sql = oneAtATime()
    const deadlocks = () => withClient(t.database.url!, async (c) => Number((await c.query('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')).rows[0].deadlocks))
    const before = await deadlocks()
    await withClient(t.database.url!, async (other) => {
      // Another transaction holds B's command and then asks for A's, which the shared statement holds
      // while it waits for B's: a deadlock, which Postgres breaks by rolling one side back.
      await other.query('BEGIN')
      await other.query('SELECT 1 FROM mdm_commands WHERE command_uuid = $1 FOR UPDATE', [b.uuids[0]])
      const busy = storeResult(sql, a.channel, 'NOT-A-COMMAND', 'acknowledged', {}, new Date(), false)
      const both = Promise.all([
        storeResult(sql, a.channel, a.uuids[0]!, 'acknowledged', { from: 'a' }, new Date(), false),
        storeResult(sql, b.channel, b.uuids[0]!, 'acknowledged', { from: 'b' }, new Date(), false),
      ])
      await busy
      await new Promise((r) => setTimeout(r, 200))
      const otherSide = other.query('SELECT 1 FROM mdm_commands WHERE command_uuid = $1 FOR UPDATE', [a.uuids[0]]).then(
        () => 'locked',
        (err: { code?: string }) => err.code,
      )
      // Whichever side Postgres rolls back, the other goes on; the shared statement's reports are stored.
      const side = await Promise.race([otherSide, new Promise((r) => setTimeout(() => r('waiting'), 3000))])
      await other.query(side === '40P01' ? 'ROLLBACK' : 'COMMIT')
      expect(await both).toEqual([
        { outcome: 'stored', next: null },
        { outcome: 'stored', next: null },
      ])
    })
    expect(await deadlocks()).toBe(before + 1)
    for (const [d, from] of [[a, 'a'], [b, 'b']] as const) {
      expect(await t.app.db.prisma.mdmCommand.findUniqueOrThrow({ where: { commandUuid: d.uuids[0]! } })).toMatchObject({ status: 'acknowledged', result: { from } })
    }
  })
})
