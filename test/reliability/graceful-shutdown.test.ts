/**
 * Fault drill: graceful shutdown. SIGTERM while a request is in flight (held in the database by a lock
 * another connection takes): the server stops accepting connections at once, finishes the request with
 * its 200, closes its database pool (Postgres sees each connection end with a Terminate message, not an
 * EOF), and exits 0 within a bound.
 */
import net from 'node:net'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createCluster, hasPostgresBinaries, type Cluster } from '../helpers/cluster.js'
import { recordFigures } from '../helpers/figures.js'
import { SERVER_SECRET, startServer, type ServerProcess } from '../helpers/server-process.js'
import { Fleet, sleep, timeout } from './drill.js'

let cluster: Cluster | undefined
let server: ServerProcess | undefined
let locker: pg.Client | undefined
afterAll(async () => {
  await locker?.end().catch(() => {})
  await server?.kill()
  cluster?.destroy()
})

/** Generous (the machine is loaded); the server's own grace period is shorter, and a hang is forever. */
const EXIT_BOUND_MS = 30_000
/** Postgres logs this (at DEBUG1) when a client goes away without saying goodbye. */
const ABRUPT = /unexpected EOF on client connection/

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describe.runIf(hasPostgresBinaries)('fault drill: graceful shutdown', () => {
  it('SIGTERM stops accepting, finishes the in-flight request, closes the pool, exits 0', async () => {
    cluster = await createCluster({ log_min_messages: 'debug1' })
    const url = cluster.url('postgres')
    server = await startServer({ DATABASE_URL: url, SERVER_SECRET, DATABASE_STATEMENT_TIMEOUT: '60s', LOG_LEVEL: 'info' })
    await server.ready()
    const fleet = new Fleet(server.base)
    const [device] = await fleet.prepare(1)
    expect(await fleet.enroll(device!)).toBe(true)
    const t = fleet.active()[0]!

    // A check-in held in the database: it waits on the lock until we let go.
    locker = new pg.Client({ connectionString: url, application_name: 'drill-locker' })
    await locker.connect()
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE mdm_enrollments IN ACCESS EXCLUSIVE MODE')
    const inFlight = fleet.session(t)
    const until = Date.now() + 30_000
    while (Number((await locker.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'byod-mdm' AND wait_event_type = 'Lock'")).rows[0].count) === 0) {
      if (Date.now() > until) throw new Error('the check-in never reached the database')
      await sleep(50)
    }

    const termAt = Date.now()
    server.term()
    const stopped = Date.now() + 10_000
    while (!/shutting down/.test(server.output())) {
      if (Date.now() > stopped) throw new Error(`no shutdown log line: ${server.output().slice(-1000)}`)
      await sleep(20)
    }
    // No new connections once shutting down.
    await sleep(200)
    expect(await connects(server.port)).toBe(false)
    expect(server.child.exitCode).toBeNull()

    // The in-flight check-in finishes with its 200 once the database answers.
    await locker.query('ROLLBACK')
    expect(await inFlight).toBe(true)
    const { code, signal } = await Promise.race([server.exited, sleep(EXIT_BOUND_MS).then(() => ({ code: 'hang', signal: null }))])
    const exitMs = Date.now() - termAt
    expect({ code, signal }, server.output().slice(-3000)).toEqual({ code: 0, signal: null })
    expect(exitMs).toBeLessThan(EXIT_BOUND_MS)
    // The pool was closed, not dropped.
    expect(cluster.log().split('\n').filter((l) => ABRUPT.test(l))).toEqual([])

    recordFigures('drill: graceful shutdown, SIGTERM with a request in flight (recovery: SIGTERM to exit 0)', {
      ...fleet.recorder.figures(fleet.recorder.answers.slice(-1)),
      'recovery s': Math.round(exitMs / 100) / 10,
    })
  }, timeout(120_000))
})
