/**
 * Two server processes on one Postgres database, as behind a load balancer: both start at once on an
 * empty database (the migrations run once, under an advisory lock), then every request of every device
 * goes to a random one of them. The whole flow (discovery, development sign-in, enroll, SCEP,
 * Authenticate, TokenUpdate, a command the administrator queues on either process, a declarative sync),
 * then steady load from a fleet; afterwards every 200 is in the database exactly once. The same flow with
 * two apps in one process is in test/e2e/simulator.test.ts; this one shares nothing but the database.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { simulateEnrollment } from '../../src/device/flow.js'
import { createPostgresDatabase, hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'
import { recordFigures } from '../helpers/figures.js'
import { freePort } from '../helpers/ports.js'
import { SERVER_SECRET, startServer } from '../helpers/server-process.js'
import { Fleet, reflect, SIZE, timeout } from './drill.js'

const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

describe.runIf(hasPostgres)('two server processes on one Postgres', () => {
  it('the whole flow and steady load, each request to a random process, nothing lost', async () => {
    const db = await createPostgresDatabase(TEST_DATABASE_URL!, 'mdm_two')
    cleanups.push(() => db.drop())
    const ports = [await freePort(), await freePort()]
    // One public URL for both, as a load balancer would give them.
    const env = { DATABASE_URL: db.url, SERVER_SECRET, SERVER_URL: `http://127.0.0.1:${ports[0]}` }
    const servers = await Promise.all(ports.map((port) => startServer(env, port)))
    for (const s of servers) cleanups.push(() => s.kill())
    await Promise.all(servers.map((s) => s.ready()))
    const bases = servers.map((s) => s.base)
    const fleet = new Fleet(bases)

    const queued: string[] = []
    const report = await simulateEnrollment({
      transport: fleet.transport,
      server: bases[0],
      user: 'two.processes@example.test',
      signIn: { kind: 'dev' },
      beforeCommands: async (device) => {
        const found = JSON.parse((await fleet.admin('GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).body.toString('utf8'))
        expect(found.items[0].status).toBe('active')
        const res = await fleet.admin('POST', '/commands', { enrollment_ids: [found.items[0].id], command: { RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ProductName'] } })
        expect(res.status, res.body.toString('utf8')).toBe(201)
        queued.push(JSON.parse(res.body.toString('utf8')).items[0].command_uuid)
      },
    })
    expect(report.diagnosis?.text).toBeUndefined()
    expect(report.ok).toBe(true)
    expect(report.steps.map((s) => s.step)).toEqual(['discovery', 'enroll-challenge', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'commands', 'declarative-sync'])
    expect(report.commands).toEqual([expect.objectContaining({ commandUuid: queued[0], requestType: 'DeviceInformation', status: 'Acknowledged' })])
    const view = JSON.parse((await fleet.admin('GET', `/commands/${queued[0]}`)).body.toString('utf8'))
    expect(view).toMatchObject({ status: 'acknowledged', result: { Status: 'Acknowledged' } })

    // Then a fleet under steady load across both.
    for (const device of await fleet.prepare(SIZE.devices)) expect(await fleet.enroll(device)).toBe(true)
    const started = Date.now()
    await fleet.load({ workers: SIZE.workers, until: () => Date.now() - started > (SIZE.loadSeconds * 1000) / 2 })
    const result = await reflect(fleet, db.url)
    recordFigures('two server processes, one Postgres, requests spread at random', {
      ...fleet.recorder.figures(),
      'lost rows': result.lost.length,
      'duplicate rows': result.duplicates.length,
      'half-written rows': result.partial.length,
      'queued behind an error': result.untold.length,
    })
    expect(fleet.recorder.wrong()).toEqual([])
    expect(fleet.acknowledged.size).toBeGreaterThan(0)
    expect(result).toEqual({ lost: [], duplicates: [], partial: [], untold: [] })
    // Both processes served (hundreds of requests: each is missed with probability 2^-hundreds).
    expect(bases.map((b) => fleet.hits.get(b) ?? 0).every((n) => n > 10)).toBe(true)
  }, timeout(180_000))
})
