/**
 * One factory for the database: a Postgres server through `pg` (DATABASE_URL) or an embedded PGlite
 * database in DATA_DIR. Both give the same Prisma client over the same schema, and a raw SQL session for
 * the migrator (Prisma's raw queries use prepared statements, which cannot run multi-statement scripts).
 */
import { execFile } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { PrismaPGlite } from 'pglite-prisma-adapter'
import { PrismaClient, type Prisma } from '../generated/prisma/client.js'

/** The client itself: storage functions that open a transaction take this. */
export type Client = PrismaClient
/** An open transaction. */
export type Tx = Prisma.TransactionClient
/** The client or an open transaction: storage functions that work inside or outside one take this. */
export type Db = Client | Tx

/** A SQL connection outside Prisma, used only by the migrator. */
export interface SqlSession {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>
  /** Runs a script of one or more statements. */
  exec(sql: string): Promise<void>
  close(): Promise<void>
}

export type DatabaseOptions =
  | { kind: 'postgres'; url: string; poolMax: number; statementTimeoutMs: number; connectTimeoutMs: number }
  | { kind: 'pglite'; dir: string }
  /** An already open PGlite instance (tests share one between two app instances). Not closed by us. */
  | { kind: 'pglite-instance'; pglite: PGlite }

/** A named statement: prepared once per connection. `rowMode: 'array'`: rows as arrays in column order. */
export interface Statement {
  name: string
  text: string
  rowMode?: 'array'
}

/**
 * Plain SQL for the few statements every check-in runs (storage/device-context, the next command): a
 * prepared statement by name on Postgres, planned once per connection, and none of the query engine's
 * per-query work. Everything else goes through Prisma. Rows come back as the driver reads them: Date for
 * timestamps, objects for JSON; bytes are Uint8Array (Buffer on Postgres) and callers normalise them.
 */
export interface Sql {
  query<T>(statement: Statement, values: unknown[]): Promise<T[]>
}

export interface Database {
  readonly kind: 'postgres' | 'pglite'
  readonly prisma: PrismaClient
  readonly sql: Sql
  /** Opens a dedicated SQL session (for migrations). */
  openSession(): Promise<SqlSession>
  close(): Promise<void>
}

/** Where the database factory reports connection trouble. */
export interface DatabaseLog {
  warn(obj: object, msg: string): void
}

/**
 * The embedded database is for trying the server on a laptop: Postgres's default 128 MB of shared buffers
 * (WASM memory, resident once touched) was most of its footprint. 16 MB holds the working set of a few
 * thousand enrollments; a deployment that needs more uses Postgres (DATABASE_URL).
 */
const PGLITE_START = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB']

/**
 * Creates the embedded database in `dir` in a child process. PGlite's initdb runs a second Postgres in
 * WASM memory: half a gigabyte that the process keeps resident after it ends, so the first start would
 * cost twice what every later start costs.
 *
 * It is made in a scratch directory beside `dir` and renamed into place once complete: PGlite unpacks the
 * new cluster file by file and treats any directory holding PG_VERSION as a database to resume, so a
 * first start killed half way would otherwise leave a directory that looks made and is not.
 */
async function initPgliteApart(dir: string, log?: DatabaseLog): Promise<void> {
  const parent = path.dirname(dir)
  const base = path.basename(dir)
  // Scratch directories of earlier starts that died before the rename.
  for (const name of readdirSync(parent)) {
    if (name.startsWith(`${base}.init-`)) rmSync(path.join(parent, name), { recursive: true, force: true })
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    // Files but no PG_VERSION: not a database we made. Kept aside, never deleted.
    const aside = `${dir}.incomplete-${Date.now()}`
    renameSync(dir, aside)
    log?.warn({ dir, movedTo: aside }, 'the embedded database directory held files but no database; moved aside, creating a new one')
  }
  const scratch = `${dir}.init-${process.pid}`
  const script = `const { PGlite } = await import(${JSON.stringify(import.meta.resolve('@electric-sql/pglite'))})
const db = await PGlite.create(${JSON.stringify(scratch)}, { startParams: ${JSON.stringify(PGLITE_START)} })
await db.close()`
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 300_000 }, (err, _stdout, stderr) =>
      err ? reject(new Error(`could not create the embedded database in ${dir}: ${stderr.trim().split('\n').slice(-3).join(' ') || err.message}`)) : resolve(),
    )
  })
  if (!existsSync(path.join(scratch, 'PG_VERSION'))) throw new Error(`could not create the embedded database in ${dir}: initdb left no PG_VERSION`)
  rmSync(dir, { recursive: true, force: true })
  renameSync(scratch, dir)
}

export async function openDatabase(options: DatabaseOptions, log?: DatabaseLog): Promise<Database> {
  if (options.kind === 'postgres') return openPostgres(options, log)
  if (options.kind === 'pglite-instance') return wrapPglite(options.pglite, async () => {})
  mkdirSync(path.dirname(options.dir), { recursive: true })
  const releaseLock = acquireDirLock(options.dir)
  let pglite: PGlite
  try {
    if (!existsSync(path.join(options.dir, 'PG_VERSION'))) await initPgliteApart(options.dir, log)
    pglite = await PGlite.create(options.dir, { startParams: PGLITE_START })
  } catch (err) {
    releaseLock()
    throw err
  }
  return wrapPglite(pglite, async () => {
    await pglite.close()
    releaseLock()
  })
}

/**
 * The named statements (Sql below) are planned once per connection. Postgres would otherwise plan the
 * check-in context lookup afresh on every execution (a custom plan for each array of keys: ~0.6 ms of
 * planning for 12 tables against ~0.05 ms of execution per key; measured again on 100,000 enrollments:
 * 1.06 ms per statement of two keys from Node, 0.28 ms with the generic plan); their generic plans are
 * index lookups that do not depend on the values. Prisma's statements are unnamed and planned per
 * execution either way. Postgres 12 or later.
 *
 * An `options` parameter in DATABASE_URL (libpq's: `?options=-c%20search_path%3Dmdm`) keeps its settings
 * and this one is added to them, unless it sets plan_cache_mode itself. pg lets a parameter of the URL
 * replace the same setting given beside it, so the parameter is taken out of the URL.
 */
export function connectionOptions(url: string): { connectionString: string; options: string } {
  const ours = '-c plan_cache_mode=force_generic_plan'
  const q = url.indexOf('?')
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1))
  const theirs = params.get('options')
  if (theirs === null) return { connectionString: url, options: ours }
  params.delete('options')
  const rest = params.toString()
  return { connectionString: url.slice(0, q) + (rest ? `?${rest}` : ''), options: /\bplan_cache_mode\b/.test(theirs) ? theirs : `${theirs} ${ours}`.trim() }
}

function openPostgres(options: Extract<DatabaseOptions, { kind: 'postgres' }>, log?: DatabaseLog): Database {
  const clientConfig: pg.ClientConfig = {
    ...connectionOptions(options.url),
    statement_timeout: options.statementTimeoutMs,
    connectionTimeoutMillis: options.connectTimeoutMs,
    application_name: 'byod-mdm',
  }
  const pool = new pg.Pool({ ...clientConfig, max: options.poolMax, idleTimeoutMillis: 30_000 })
  // An idle client losing its connection emits 'error' on the pool; unhandled, it would kill the
  // process. The pool replaces the client on the next checkout, so logging is all there is to do.
  pool.on('error', (err) => log?.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'database connection lost'))
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) })
  return {
    kind: 'postgres',
    prisma,
    sql: {
      async query<T>(statement: Statement, values: unknown[]) {
        const { name, text, rowMode } = statement
        return (rowMode ? (await pool.query({ name, text, values, rowMode })).rows : (await pool.query({ name, text, values })).rows) as T[]
      },
    },
    async openSession() {
      // Migrations may take longer than a request: no statement timeout here.
      const client = new pg.Client({ ...clientConfig, statement_timeout: 0 })
      client.on('error', () => {})
      await client.connect()
      return {
        async query<T>(sql: string, params?: unknown[]) {
          return (await client.query(sql, params)).rows as T[]
        },
        async exec(sql: string) {
          await client.query(sql)
        },
        close: () => client.end(),
      }
    },
    async close() {
      await prisma.$disconnect()
      await pool.end()
    },
  }
}

function wrapPglite(pglite: PGlite, close: () => Promise<void>): Database {
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) })
  return {
    kind: 'pglite',
    prisma,
    sql: {
      async query<T>(statement: Statement, values: unknown[]) {
        return (await pglite.query<T>(statement.text, values, { rowMode: statement.rowMode ?? 'object' })).rows
      },
    },
    async openSession() {
      // PGlite is one connection: the session shares it with Prisma. Callers run before the app serves.
      return {
        async query<T>(sql: string, params?: unknown[]) {
          return (await pglite.query(sql, params)).rows as T[]
        },
        async exec(sql: string) {
          await pglite.exec(sql)
        },
        async close() {},
      }
    },
    async close() {
      await prisma.$disconnect()
      await close()
    },
  }
}

/** The embedded database directory is locked by another live process (a running server). */
export class DatabaseInUseError extends Error {
  override name = 'DatabaseInUseError'
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`the embedded database in ${dir} is in use by process ${pid}; stop it first, or set DATABASE_URL to share a Postgres server between processes`)
  }
}

/**
 * PGlite is an in-process database: two processes opening the same directory would corrupt it. A lock
 * file with our pid makes the second one stop with a clear message; a lock left by a dead process is
 * taken over.
 */
function acquireDirLock(dir: string): () => void {
  const file = path.join(dir, '..', 'pglite.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600)
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number.parseInt(readFileSync(file, 'utf8'), 10)
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
        throw new DatabaseInUseError(path.dirname(dir), pid)
      }
      rmSync(file, { force: true })
    }
  }
  throw new Error(`cannot lock the embedded database directory ${dir}`)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
