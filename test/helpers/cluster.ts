/**
 * A throwaway Postgres cluster of our own (initdb + pg_ctl on a free loopback port, in a temp dir) that a
 * fault drill may stop and start without touching the shared server on 5432. `initdb` refuses to run as
 * root, so as root every binary runs as the `postgres` user (TOOLCHAIN.md). Skipped where no Postgres
 * binaries are installed (`hasPostgresBinaries`).
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

function findBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined
}

const BIN = process.env.PG_BIN ?? findBin()
const AS_ROOT = process.getuid?.() === 0

/** initdb and pg_ctl are there, and (as root) a postgres user to run them as. */
export const hasPostgresBinaries = Boolean(BIN) && (!AS_ROOT || spawnSync('id', ['-u', 'postgres']).status === 0)

export interface Cluster {
  port: number
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  adminUrl: string
  /** A URL of database `name` on this cluster. */
  url(name: string): string
  /** `pg_ctl stop -m <mode>`: fast (clients disconnected, clean), immediate (like a crash). */
  stop(mode?: 'fast' | 'immediate'): void
  start(): void
  /** The server's log so far. */
  log(): string
  /** Stops the cluster and removes its directory. */
  destroy(): void
}

function run(bin: string, args: string[]): string {
  const file = path.join(BIN!, bin)
  const [cmd, argv] = AS_ROOT ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args]
  return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 })
}

async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** `settings`: extra `-c name=value` server settings (a drill that reads the log may want more of it). */
export async function createCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  if (!BIN) throw new Error('no Postgres binaries (initdb, pg_ctl) found')
  const dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-cluster-'))
  if (AS_ROOT) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    chownSync(dir, uid, gid)
  }
  const data = path.join(dir, 'data')
  const logFile = path.join(dir, 'postgres.log')
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--no-instructions'])
  const port = await freeLoopbackPort()
  // Sockets in our own directory (not /var/run/postgresql), TCP on loopback only; fsync stays on (the
  // drills are about what survives). A short checkpoint keeps a restart after `immediate` quick.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100 -c log_min_messages=warning ${Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`).join(' ')}`
  let running = false
  const cluster: Cluster = {
    port,
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    url: (name) => `postgres://postgres@127.0.0.1:${port}/${name}`,
    stop(mode = 'fast') {
      if (!running) return
      run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'])
      running = false
    },
    start() {
      if (running) return
      run('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '120', 'start'])
      running = true
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    destroy() {
      try {
        cluster.stop('immediate')
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  cluster.start()
  return cluster
}
