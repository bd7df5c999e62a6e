/**
 * Fault drill (SECURITY.md row 21): a slow database. Another connection holds a lock on the table every
 * check-in and every enrollment listing reads, so their queries wait, forever if nothing stops them.
 * DATABASE_STATEMENT_TIMEOUT turns the wait into 503 with Retry-After within a bounded time, on both the
 * check-in's plain-SQL path and the admin API's Prisma path; once the lock goes, the same requests
 * succeed.
 */
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase, hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'
import { recordFigures } from '../helpers/figures.js'
import { SERVER_SECRET, startServer, type ServerProcess } from '../helpers/server-process.js'
import { Fleet, timeout } from './drill.js'

const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const STATEMENT_TIMEOUT_S = 2
/** Far above the statement timeout, far below "forever": a request past it hangs. */
const BOUND_MS = STATEMENT_TIMEOUT_S * 1000 + 20_000

describe.runIf(hasPostgres)('fault drill: a slow database', () => {
  it('a stuck query becomes 503 with Retry-After within a bounded time, and succeeds once unstuck', async () => {
    const db = await createPostgresDatabase(TEST_DATABASE_URL!, 'mdm_drill')
    cleanups.push(() => db.drop())
    const server: ServerProcess = await startServer({ DATABASE_URL: db.url, SERVER_SECRET, DATABASE_STATEMENT_TIMEOUT: `${STATEMENT_TIMEOUT_S}s` })
    cleanups.push(() => server.kill())
    await server.ready()
    const fleet = new Fleet(server.base)
    const [device] = await fleet.prepare(1)
    expect(await fleet.enroll(device!)).toBe(true)
    const t = fleet.active()[0]!

    const locker = new pg.Client({ connectionString: db.url })
    await locker.connect()
    cleanups.push(() => locker.end())
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE mdm_enrollments IN ACCESS EXCLUSIVE MODE')

    const stuck = [
      () => fleet.session(t),
      () => fleet.admin('GET', `/enrollments?enrollment_id=${t.device.enrollmentId}`),
    ]
    const before = fleet.recorder.answers.length
    for (const request of stuck) {
      const started = Date.now()
      await request()
      expect(Date.now() - started).toBeLessThan(BOUND_MS)
    }
    const whileStuck = fleet.recorder.answers.slice(before)
    // 503 with a Retry-After a client can read (seconds), on both paths.
    expect(whileStuck.map((a) => [a.status, /^[1-9]\d*$/.test(a.retryAfter ?? '')])).toEqual([
      [503, true],
      [503, true],
    ])

    await locker.query('ROLLBACK')
    const releasedAt = Date.now()
    expect(await fleet.session(t)).toBe(true)
    expect((await fleet.admin('GET', `/enrollments?enrollment_id=${t.device.enrollmentId}`)).status).toBe(200)
    const recovery = Date.now() - releasedAt
    // The server kept running throughout.
    expect(server.child.exitCode).toBeNull()

    recordFigures('drill: slow database, statement timeout (recovery: lock released to 200)', {
      ...fleet.recorder.figures(whileStuck),
      'recovery s': Math.round(recovery / 100) / 10,
    })
  }, timeout(120_000))
})
