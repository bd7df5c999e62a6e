/**
 * Fault drill: the very first start, which creates the embedded database (PGlite's initdb, seconds of
 * work), is killed half way. The next start must not find a half-made directory and fail on it forever:
 * it creates the database again and serves. The database is made in a scratch directory and renamed into
 * place when complete (src/storage/database.ts), so a kill never leaves a half-made one where it belongs.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startServer, type ServerProcess } from '../helpers/server-process.js'
import { sleep, timeout } from './drill.js'

let server: ServerProcess | undefined
let dataDir: string | undefined
afterAll(async () => {
  await server?.kill()
  if (dataDir) rmSync(dataDir, { recursive: true, force: true })
})

/** Files under `dir`, recursively. */
function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0
  let n = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) n += entry.isDirectory() ? countFiles(path.join(dir, entry.name)) : 1
  return n
}

describe('fault drill: the first start is killed while it creates the embedded database', () => {
  it('the next start creates it again and serves', async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-initdb-'))
    server = await startServer({ DATA_DIR: dataDir })
    // Kill once initdb has written part of the cluster (a few hundred files make a whole one).
    const until = Date.now() + 120_000
    while (countFiles(dataDir) < 40) {
      if (Date.now() > until) throw new Error('initdb never started writing')
      if (server.child.exitCode !== null) throw new Error(`the server exited before initdb: ${server.output()}`)
      await sleep(20)
    }
    await server.kill()
    expect(await isListening(server.base)).toBe(false)
    // What the killed start left is not in the database's place: nothing there looks made and is not.
    const pgdata = path.join(dataDir, 'pgdata')
    expect(existsSync(path.join(pgdata, 'PG_VERSION'))).toBe(false)
    expect(countFiles(pgdata)).toBe(0)

    server = await startServer({ DATA_DIR: dataDir })
    await server.ready(180_000)
    const enroll = await fetch(`${server.base}/api/mdm/apple/enroll`, { method: 'POST', headers: { 'content-type': 'application/pkcs7-signature' }, body: 'x' })
    expect(enroll.status).toBeLessThan(500)
    server.term()
    expect((await server.exited).code).toBe(0)
    // The scratch directory was renamed into place or removed: only the database, its lock-free parent.
    expect(readdirSync(dataDir).filter((n) => n.startsWith('pgdata')).sort()).toEqual(['pgdata'])
    expect(existsSync(path.join(pgdata, 'PG_VERSION'))).toBe(true)
  }, timeout(300_000))
})

async function isListening(base: string): Promise<boolean> {
  try {
    await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })
    return true
  } catch {
    return false
  }
}
