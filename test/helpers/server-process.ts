/**
 * The server as a real process, for the fault drills (test/reliability): `node dist/server.js` when the
 * build is asked for (RELIABILITY_BUILT=1, set by `npm run test:reliability` after `npm run build`), or
 * the same entry point from source through tsx (what test/app/server-process.test.ts does; no build step
 * in a plain `npm test`). Its own process group, so that a kill reaches any child it started (PGlite's
 * initdb). Output is kept for the test to read.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { freePort } from './ports.js'

const ROOT = new URL('../../', import.meta.url).pathname
export const ADMIN_TOKEN = 'drill-admin-token-0123456789abcdef0123456789'
export const SERVER_SECRET = 'drill-server-secret-0123456789abcdef0123456789'

export interface ServerProcess {
  child: ChildProcess
  port: number
  /** http://127.0.0.1:<port> */
  base: string
  output(): string
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves once /readyz answers 200 (rejects if the process exits first). */
  ready(timeoutMs?: number): Promise<void>
  /** SIGKILL to the whole process group (the server and anything it started). */
  kill(): Promise<void>
  /** SIGTERM to the server only. */
  term(): void
}


function entry(): string[] {
  const built = path.join(ROOT, 'dist', 'server.js')
  if (process.env.RELIABILITY_BUILT === '1') {
    if (!existsSync(built)) throw new Error('RELIABILITY_BUILT=1 but dist/server.js is missing: npm run build')
    return [built]
  }
  return ['--import', 'tsx', path.join(ROOT, 'src', 'server.ts')]
}

/**
 * Starts the server with `env` on top of a bare environment (PATH, HOME), listening on 127.0.0.1:`port`
 * (a free one by default) with SERVER_URL there, the admin API on, and the per-address rate limits out
 * of the way (every simulated device comes from 127.0.0.1; the limits have their own tests).
 */
export async function startServer(env: Record<string, string>, port?: number): Promise<ServerProcess> {
  const p = port ?? (await freePort())
  const base = `http://127.0.0.1:${p}`
  const child = spawn(process.execPath, entry(), {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH!,
      HOME: process.env.HOME ?? '/tmp',
      PORT: String(p),
      HOST: '127.0.0.1',
      SERVER_URL: base,
      ADMIN_API_TOKEN: ADMIN_TOKEN,
      ENROLL_RATE_LIMIT: '1000000',
      ADMIN_RATE_LIMIT: '1000000',
      SSO_RATE_LIMIT: '1000000',
      LOG_LEVEL: 'warn',
      // One process, as the drills count it (test/app/workers.test.ts covers WORKERS > 1).
      WORKERS: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const gone = () => child.exitCode !== null || child.signalCode !== null
  return {
    child,
    port: p,
    base,
    output: () => out,
    exited,
    async ready(timeoutMs = 120_000) {
      const until = Date.now() + timeoutMs
      while (Date.now() < until) {
        if (gone()) throw new Error(`the server exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${out.slice(-2000)}`)
        try {
          const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) })
          if (res.status === 200) return
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 200))
      }
      throw new Error(`the server was not ready within ${timeoutMs} ms:\n${out.slice(-2000)}`)
    },
    async kill() {
      if (gone()) return
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        child.kill('SIGKILL')
      }
      await exited
    },
    term() {
      child.kill('SIGTERM')
    },
  }
}
