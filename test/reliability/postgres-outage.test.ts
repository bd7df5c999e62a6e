/**
 * Fault drill (SECURITY.md row 20): Postgres stops under load and starts again. A throwaway cluster of our
 * own, the server as a process on it, devices checking in and acknowledging commands the administrator
 * queues, more devices enrolling meanwhile. While the database is down every refusal is 503 with
 * Retry-After (never 401/403, which would send devices to sign in again), no request hangs, and the
 * server recovers without a restart; afterwards every 200 is in the database exactly once.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createCluster, hasPostgresBinaries, type Cluster } from '../helpers/cluster.js'
import { recordFigures } from '../helpers/figures.js'
import { SERVER_SECRET, startServer, type ServerProcess } from '../helpers/server-process.js'
import { Fleet, reflect, SIZE, sleep, timeout } from './drill.js'

let cluster: Cluster | undefined
let server: ServerProcess | undefined
afterAll(async () => {
  await server?.kill()
  cluster?.destroy()
})

describe.runIf(hasPostgresBinaries)('fault drill: Postgres stops under load', () => {
  it('answers 503 with Retry-After while it is down, recovers without a restart, loses nothing', async () => {
    cluster = await createCluster()
    const url = cluster.url('postgres')
    server = await startServer({
      DATABASE_URL: url,
      SERVER_SECRET,
      DATABASE_POOL_MAX: '5',
      DATABASE_CONNECT_TIMEOUT: '2s',
      DATABASE_STATEMENT_TIMEOUT: '5s',
    })
    await server.ready()

    const fleet = new Fleet(server.base)
    for (const device of await fleet.prepare(SIZE.devices)) expect(await fleet.enroll(device)).toBe(true)
    const more = await fleet.prepare(SIZE.moreDevices)

    // Load for loadSeconds; the database goes away a third of the way in, for outageSeconds.
    const started = Date.now()
    const loadMs = SIZE.loadSeconds * 1000
    const load = fleet.load({ workers: SIZE.workers, until: () => Date.now() - started > loadMs, enroll: more, enrollEveryMs: loadMs / (more.length + 1) })
    await sleep(loadMs / 3)
    const stopAt = Date.now()
    cluster.stop('fast')
    const stoppedAt = Date.now()
    await sleep(SIZE.outageSeconds * 1000)
    const startAt = Date.now()
    cluster.start()
    const startedAt = Date.now()
    const { sessions, failedSessions } = await load

    // After the load: every device checks in once more (what a device does after a 503), all succeed.
    for (const t of fleet.active()) expect(await fleet.session(t)).toBe(true)

    const answers = fleet.recorder.answers
    const during = answers.filter((a) => a.startedAt >= stoppedAt && a.startedAt + a.ms <= startAt)
    const firstOkAfter = answers.filter((a) => a.startedAt >= startedAt && a.status === 200 && a.path.startsWith('/mdm/')).sort((a, b) => a.startedAt + a.ms - (b.startedAt + b.ms))[0]
    const result = await reflect(fleet, url)
    const served503 = fleet.recorder.count(503)
    recordFigures('drill: Postgres stops under load (recovery: restart to first check-in 200)', {
      ...fleet.recorder.figures(),
      'lost rows': result.lost.length,
      'duplicate rows': result.duplicates.length,
      'half-written rows': result.partial.length,
      'queued behind an error': result.untold.length,
      'outage s': Math.round((startedAt - stopAt) / 100) / 10,
      'recovery s': firstOkAfter ? Math.round((firstOkAfter.startedAt + firstOkAfter.ms - startedAt) / 100) / 10 : -1,
    })

    // The outage was felt (requests were refused), and every refusal was the right one.
    expect(during.length).toBeGreaterThan(0)
    expect(served503).toBeGreaterThan(0)
    expect(fleet.recorder.wrong(), JSON.stringify(fleet.recorder.wrong().slice(0, 5))).toEqual([])
    expect(fleet.recorder.hangs()).toEqual([])
    expect(answers.filter((a) => a.status === 401 && !a.challenge)).toEqual([])
    // Recovered without a restart: the same process, check-ins succeeding again.
    expect(server.child.exitCode).toBeNull()
    expect(firstOkAfter).toBeDefined()
    expect(sessions).toBeGreaterThan(0)
    expect(failedSessions).toBeGreaterThan(0)
    // Nothing lost, nothing twice, nothing half written.
    expect(fleet.acknowledged.size).toBeGreaterThan(0)
    // ... and no command queued behind a 503 (the administrator's retry would queue it twice).
    expect(result).toEqual({ lost: [], duplicates: [], partial: [], untold: [] })
  }, timeout(240_000))
})
