/**
 * A fresh database per test app: a new Postgres database on TEST_DATABASE_URL's server (dropped after),
 * or an in-memory PGlite when TEST_DATABASE_URL is not set. Parallel test files never share state.
 */
import { randomBytes } from 'node:crypto'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import type { DatabaseOptions } from '../../src/storage/database.js'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

export interface TestDatabase {
  kind: 'postgres' | 'pglite'
  /** Options for `openDatabase`/`buildApp`; several apps may open the same test database. */
  options: DatabaseOptions
  /** postgres:// URL of this database (Postgres only). */
  url?: string
  drop(): Promise<void>
}

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined
export const hasPostgres = Boolean(TEST_DATABASE_URL)

export async function createTestDatabase(): Promise<TestDatabase> {
  if (!TEST_DATABASE_URL) {
    const pglite = await PGlite.create()
    return { kind: 'pglite', options: { kind: 'pglite-instance', pglite }, drop: () => pglite.close() }
  }
  const name = `mdm_test_${process.pid}_${randomBytes(4).toString('hex')}`
  await withAdmin((c) => c.query(`CREATE DATABASE ${name}`))
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  return {
    kind: 'postgres',
    url: url.toString(),
    options: { kind: 'postgres', url: url.toString(), poolMax: 5, statementTimeoutMs: 10_000, connectTimeoutMs: 5_000 },
    drop: () => withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  }
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/**
 * A fresh Postgres test database reached through a TCP proxy the test can cut and restore (outage
 * tests; Postgres only). Give `database` to buildTestApp; `drop()` stops the proxy and drops it.
 */
export async function createProxiedTestDatabase(): Promise<{ database: TestDatabase; proxy: TcpProxy; drop(): Promise<void> }> {
  const database = await createTestDatabase()
  const target = new URL(TEST_DATABASE_URL!)
  const proxy = await startTcpProxy({ host: target.hostname || '127.0.0.1', port: Number(target.port || 5432) })
  const viaProxy = new URL(database.url!)
  viaProxy.hostname = '127.0.0.1'
  viaProxy.port = String(proxy.port)
  return {
    database: { ...database, options: { kind: 'postgres', url: viaProxy.toString(), poolMax: 3, statementTimeoutMs: 2000, connectTimeoutMs: 1000 } },
    proxy,
    async drop() {
      await proxy.close()
      await database.drop()
    },
  }
}
