/**
 * The two servers under test, each in its own process on 127.0.0.1: ours (src/server.ts on a throwaway
 * Postgres database) and micromdm's Go `scepserver` from the Debian `scep` package (its own file depot
 * and CA in a temporary directory, a static challenge).
 */
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createPostgresDatabase, withClient } from '../../test/helpers/database.js'
import { freePort } from '../../test/helpers/ports.js'
import { stopChild, waitFor } from '../lib/processes.js'

export const OURS = 'byod-mdm (Node, Postgres)'
export const GO = 'micromdm scepserver (Go)'

export interface RunningServer {
  name: string
  /** The SCEP URL, e.g. http://127.0.0.1:1234/mdm/apple/scep */
  url: string
  /** How many certificates the server has issued so far (from its own storage). */
  issued(): Promise<number>
  stop(): Promise<void>
}

export interface OurServer extends RunningServer {
  /** The server's own database, for minting challenges through our services. */
  databaseUrl: string
}

export async function startOurs(adminUrl: string): Promise<OurServer> {
  const database = await createPostgresDatabase(adminUrl, 'scep_bench')
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const dataDir = mkdtempSync(path.join(tmpdir(), 'scep-bench-ours-'))
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []), '--import', 'tsx', 'src/server.ts'], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      SERVER_URL: base,
      DATABASE_URL: database.url,
      // One process, as the reference SCEP servers run.
      WORKERS: '1',
      SERVER_SECRET: randomBytes(32).toString('base64'),
      DATA_DIR: dataDir,
      ORG_NAME: 'Bench',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  await waitFor(`${base}/readyz`, child)
  return {
    name: OURS,
    url: `${base}/mdm/apple/scep`,
    databaseUrl: database.url,
    issued: () => withClient(database.url, async (c) => Number((await c.query('SELECT count(*) AS n FROM device_certificates')).rows[0].n)),
    async stop() {
      await stopChild(child)
      await database.drop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export async function startGo(challenge: string): Promise<RunningServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'scep-bench-go-'))
  const depot = path.join(dir, 'depot')
  // The same CA key size as ours (scepserver's default is 4096).
  execFileSync('scepserver', ['ca', '-init', '-depot', depot, '-keySize', '2048'], { stdio: 'ignore' })
  const port = await freePort()
  const child = spawn('scepserver', ['-depot', depot, '-port', String(port), '-challenge', challenge, '-allowrenew', '0'], { stdio: ['ignore', 'ignore', 'ignore'] })
  const url = `http://127.0.0.1:${port}/scep`
  await waitFor(`${url}?operation=GetCACaps`, child)
  return {
    name: GO,
    url,
    // The file depot writes each certificate to <CN>.<serial>.pem next to ca.pem.
    issued: async () => readdirSync(depot).filter((f) => f.endsWith('.pem') && f !== 'ca.pem').length,
    async stop() {
      await stopChild(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
