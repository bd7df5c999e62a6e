/**
 * A fresh database per test app: a new Postgres database on TEST_DATABASE_URL's server (dropped after),
 * or an in-memory PGlite when TEST_DATABASE_URL is not set. Parallel test files never share state.
 */
import { randomBytes } from 'node:crypto'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import type { DatabaseOptions } from '../../src/storage/database.js'

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
  const { url, drop } = await createPostgresDatabase(TEST_DATABASE_URL, 'mdm_test')
  return {
    kind: 'postgres',
    url,
    options: { kind: 'postgres', url, poolMax: 5, statementTimeoutMs: 10_000, connectTimeoutMs: 5_000 },
    drop,
  }
}

/**
 * A new, empty database on the Postgres server of `adminUrl`, named `<prefix>_<pid>_<random>` so that
 * parallel runs never meet; `drop` removes it (also used by the benchmarks). With `template` (a database
 * on the same server that nobody is connected to), a copy of that one.
 */
export async function createPostgresDatabase(adminUrl: string, prefix: string, template?: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${c.escapeIdentifier(template)}` : ''}`))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () => withClient(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  }
}

/** Runs `fn` with a fresh connection to `url`, closed afterwards. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}
