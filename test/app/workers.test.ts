/**
 * WORKERS: one start runs N server processes (node:cluster) on one port, on Postgres. The supervisor
 * replaces a worker that dies, stops the server when a worker cannot start, and exits 0 on SIGTERM once
 * every worker has finished. The embedded database refuses WORKERS > 1 at start.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase, hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'
import { freePort } from '../helpers/ports.js'
import { SERVER_SECRET, startServer, type ServerProcess } from '../helpers/server-process.js'

/** The supervisor's own log lines (info) name each worker by pid. */
const start = (env: Record<string, string>) => startServer({ LOG_LEVEL: 'info', DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-workers-')), ...env })

async function waitFor(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The workers the supervisor reported listening, alive now. */
function workersOf(output: string): number[] {
  const pids = [...output.matchAll(/"role":"supervisor","worker":(\d+),"listening"/g)].map((m) => Number(m[1]))
  return [...new Set(pids)].filter(alive)
}

const drops: (() => Promise<void>)[] = []
const started: ServerProcess[] = []
afterAll(async () => {
  // A failed test leaves no server behind: the whole process group, workers included.
  for (const server of started) await server.kill()
  for (const drop of drops) await drop().catch(() => {})
})

describe('WORKERS', () => {
  it('is refused with the embedded database, naming WORKERS', async () => {
    const p = await start({ WORKERS: '2' })
    started.push(p)
    expect((await p.exited).code).toBe(1)
    expect(p.output().trim().split('\n')[0]).toMatch(/^configuration error: WORKERS: is 2 but the embedded database \(no DATABASE_URL\) is opened by one process only/)
  }, 60_000)

  it.runIf(hasPostgres)('runs N workers on one port, replaces one that dies, and exits 0 on SIGTERM with all of them', async () => {
    const db = await createPostgresDatabase(TEST_DATABASE_URL!, 'mdm_workers')
    drops.push(db.drop)
    const p = await start({ WORKERS: '2', DATABASE_URL: db.url, SERVER_SECRET })
    started.push(p)
    await waitFor(() => /ready \(Postgres, 2 worker processes\)/.test(p.output()), 120_000, 'the banner')
    await waitFor(() => workersOf(p.output()).length === 2, 60_000, 'two listening workers')
    // The banner is printed once, by the first worker.
    expect(p.output().match(/Service discovery/g)).toHaveLength(1)
    const workers = workersOf(p.output())
    expect((await fetch(`${p.base}/readyz`)).status).toBe(200)

    process.kill(workers[0]!, 'SIGKILL')
    await waitFor(() => {
      const now = workersOf(p.output())
      return now.length === 2 && !now.includes(workers[0]!)
    }, 60_000, 'a replacement worker')
    expect(p.output()).toMatch(/"msg":"a worker died; starting another"/)
    await waitFor(async () => (await fetch(`${p.base}/readyz`).catch(() => undefined))?.status === 200, 30_000, '/readyz')
    for (let i = 0; i < 10; i++) expect((await fetch(`${p.base}/healthz`)).status).toBe(200)

    const last = workersOf(p.output())
    p.term()
    expect((await p.exited).code).toBe(0)
    for (const pid of last) expect(alive(pid), `worker ${pid}`).toBe(false)
  }, 240_000)

  it.runIf(hasPostgres)('stops the server when a worker cannot start (no database there): the worker\'s reason, exit non-zero', async () => {
    const p = await start({ WORKERS: '2', DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/none`, DATABASE_CONNECT_TIMEOUT: '1', SERVER_SECRET })
    started.push(p)
    expect((await p.exited).code).not.toBe(0)
    expect(p.output()).toMatch(/"msg":"a worker stopped before it listened; stopping the server"/)
    expect(workersOf(p.output())).toEqual([])
  }, 120_000)
})
