/**
 * Applies prisma/migrations/<timestamp>_<name>/migration.sql in order, each exactly once, each in its own
 * transaction, recorded in `schema_migrations`, under a Postgres advisory lock so that several processes
 * starting together do not race. The same files run on a Postgres server and on PGlite. No Prisma CLI is
 * involved (it cannot run offline; see TOOLCHAIN.md).
 */
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Db, SqlSession } from './database.js'

/** prisma/migrations, found from both src/storage (tests) and dist/storage (built). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url))

/** An arbitrary constant that identifies this application's migration lock. */
const LOCK_KEY = 0x6d646d5f6d6967n // "mdm_mig"

export interface Migration {
  name: string
  sql: string
  checksum: string
}

export interface MigrationResult {
  applied: string[]
  /** Migrations recorded in the database that this code does not have (a newer version ran). */
  unknown: string[]
}

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  if (!existsSync(dir)) throw new Error(`migrations directory not found: ${dir}`)
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && /^\d{14}_[a-z0-9_]+$/.test(d.name))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(`${dir}/${name}/migration.sql`, 'utf8')
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') }
    })
}

export async function migrate(
  session: SqlSession,
  migrations: Migration[] = readMigrations(),
  log: (msg: string) => void = () => {},
): Promise<MigrationResult> {
  await session.query('SELECT pg_advisory_lock($1)', [LOCK_KEY.toString()])
  try {
    await session.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name       text PRIMARY KEY,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const rows = await session.query<{ name: string; checksum: string }>('SELECT name, checksum FROM schema_migrations')
    const done = new Map(rows.map((r) => [r.name, r.checksum]))
    const known = new Set(migrations.map((m) => m.name))
    const applied: string[] = []
    for (const m of migrations) {
      const recorded = done.get(m.name)
      if (recorded !== undefined) {
        if (recorded !== m.checksum) {
          throw new Error(
            `migration ${m.name} was changed after it was applied (checksum differs); add a new migration instead of editing an applied one`,
          )
        }
        continue
      }
      await session.exec('BEGIN')
      try {
        await session.exec(m.sql)
        await session.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum])
        await session.exec('COMMIT')
      } catch (err) {
        await session.exec('ROLLBACK').catch(() => {})
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
      }
      log(`applied migration ${m.name}`)
      applied.push(m.name)
    }
    return { applied, unknown: [...done.keys()].filter((n) => !known.has(n)) }
  } finally {
    await session.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY.toString()]).catch(() => {})
  }
}

/** Names of the migrations the database has applied (for the readiness check). */
export async function appliedMigrationNames(db: Db): Promise<Set<string>> {
  const rows = await db.$queryRawUnsafe<{ name: string }[]>('SELECT name FROM schema_migrations')
  return new Set(rows.map((r) => r.name))
}

export interface MigrationStatus {
  /** Known migrations not applied yet (the server applies them at its next start). */
  pending: string[]
  /** Applied migrations whose file changed since (the server refuses to start). */
  changed: string[]
  /** Applied migrations this code does not have (a newer version ran). */
  unknown: string[]
  /** How many known migrations are applied. */
  applied: number
}

/**
 * What `migrate` would find, without changing anything (npm run doctor): no lock, no table created. A
 * database without `schema_migrations` has every migration pending.
 */
export async function migrationStatus(session: SqlSession, migrations: Migration[] = readMigrations()): Promise<MigrationStatus> {
  const [table] = await session.query<{ present: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
  const rows = table?.present ? await session.query<{ name: string; checksum: string }>('SELECT name, checksum FROM schema_migrations') : []
  const done = new Map(rows.map((r) => [r.name, r.checksum]))
  const known = new Set(migrations.map((m) => m.name))
  return {
    pending: migrations.filter((m) => !done.has(m.name)).map((m) => m.name),
    changed: migrations.filter((m) => done.has(m.name) && done.get(m.name) !== m.checksum).map((m) => m.name),
    unknown: [...done.keys()].filter((n) => !known.has(n)).sort(),
    applied: migrations.filter((m) => done.has(m.name)).length,
  }
}
