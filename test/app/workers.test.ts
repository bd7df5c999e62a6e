/**
 * WORKERS: one start runs N server processes (node:cluster) on one port, on Postgres. The supervisor
 * replaces a worker that dies, stops the server when a worker cannot start, and exits 0 on SIGTERM once
 * every worker has finished. The embedded database refuses WORKERS > 1 at start.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase, hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'

const ROOT = new URL('../../', import.meta.url).pathname

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', HOST: '127.0.0.1', DATA_DIR: mkdtempSync(path.join(tmpdir(), 'byod-mdm-workers-')), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  started.push(child)
  return { child, output: () => out, exited }
}

async function waitFor(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** The workers the supervisor reported listening, alive now (its log names each by pid). */
function workersOf(output: string): number[] {
  const pids = [...output.matchAll(/"role":"supervisor","worker":(\d+),"listening"/g)].map((m) => Number(m[1]))
  return [...new Set(pids)].filter(alive)
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function freePort(): Promise<number> {
  const net = await import('node:net')
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

const drops: (() => Promise<void>)[] = []
const started: ChildProcess[] = []
afterAll(async () => {
  // A failed test leaves no server behind: the supervisor and its workers (by their logged pids).
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL')
  for (const drop of drops) await drop().catch(() => {})
})

describe('WORKERS', () => {
  it('is refused with the embedded database, naming WORKERS', async () => {
    const p = start({ WORKERS: '2', PORT: '0' })
    expect(await p.exited).toBe(1)
    expect(p.output().trim().split('\n')[0]).toMatch(/^configuration error: WORKERS: is 2 but the embedded database \(no DATABASE_URL\) is opened by one process only/)
  }, 60_000)

  it.runIf(hasPostgres)('runs N workers on one port, replaces one that dies, and exits 0 on SIGTERM with all of them', async () => {
    const db = await createPostgresDatabase(TEST_DATABASE_URL!, 'mdm_workers')
    drops.push(db.drop)
    const port = await freePort()
    const p = start({ WORKERS: '2', PORT: String(port), DATABASE_URL: db.url, SERVER_SECRET: randomBytes(32).toString('base64') })
    await waitFor(() => /ready \(Postgres, 2 worker processes\)/.test(p.output()), 120_000, 'the banner')
    await waitFor(() => workersOf(p.output()).length === 2, 60_000, 'two listening workers')
    // The banner is printed once, by the first worker.
    expect(p.output().match(/Service discovery/g)).toHaveLength(1)
    const workers = workersOf(p.output())
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200)

    process.kill(workers[0]!, 'SIGKILL')
    await waitFor(() => {
      const now = workersOf(p.output())
      return now.length === 2 && !now.includes(workers[0]!)
    }, 60_000, 'a replacement worker')
    expect(p.output()).toMatch(/"msg":"a worker died; starting another"/)
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, 30_000, '/readyz')
    for (let i = 0; i < 10; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)

    const last = workersOf(p.output())
    p.child.kill('SIGTERM')
    expect(await p.exited).toBe(0)
    for (const pid of last) expect(alive(pid), `worker ${pid}`).toBe(false)
  }, 240_000)

  it.runIf(hasPostgres)('stops the server when a worker cannot start (no database there): the worker\'s reason, exit non-zero', async () => {
    const port = await freePort()
    const p = start({ WORKERS: '2', PORT: String(port), DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/none`, DATABASE_CONNECT_TIMEOUT: '1', SERVER_SECRET: randomBytes(32).toString('base64') })
    const code = await p.exited
    expect(code).not.toBe(0)
    expect(p.output()).toMatch(/"msg":"a worker stopped before it listened; stopping the server"/)
    expect(workersOf(p.output())).toEqual([])
  }, 120_000)
})
