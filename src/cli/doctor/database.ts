/**
 * The database: reachable, and every migration in prisma/migrations applied, as /readyz judges it. The
 * doctor changes nothing: it applies no migration and creates no database; an embedded database that
 * does not exist yet is left for `npm start` to create.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../../config/index.js'
import { DatabaseInUseError, openDatabase, type Database, type DatabaseOptions } from '../../storage/database.js'
import { migrationStatus, readMigrations } from '../../storage/migrate.js'
import { fail, ok, skipped, warn, type Outcome } from './result.js'

export interface DatabaseState {
  outcome: Outcome
  /** Open and fully migrated: the checks that read tables may use it. Closed by the caller. */
  db?: Database
  /** Open but not usable for reading tables (migrations pending), to be closed by the caller. */
  openOnly?: Database
  /** The embedded database does not exist yet (npm start creates it). */
  absent?: boolean
}

export async function checkDatabase(config: Config, override?: DatabaseOptions): Promise<DatabaseState> {
  const where = describe(config)
  if (!override && config.database.kind === 'pglite' && !existsSync(path.join(config.database.dir, 'PG_VERSION'))) {
    return {
      outcome: warn(`no embedded database in ${config.database.dir} yet`, 'npm start creates it and applies the migrations (for several server processes behind a load balancer, use Postgres: DATABASE_URL and SERVER_SECRET)'),
      absent: true,
    }
  }
  let db: Database
  try {
    db = await openDatabase(override ?? config.database)
  } catch (err) {
    if (err instanceof DatabaseInUseError) {
      return {
        outcome: skipped(
          `the embedded database in ${err.dir} is in use by process ${err.pid} (a running server?); an embedded database has one user at a time`,
          'stop the server to let the doctor check the database, the keys and the teams (with Postgres, DATABASE_URL, both can run at once)',
        ),
      }
    }
    return { outcome: connectionFailure(err, where) }
  }
  try {
    const session = await db.openSession()
    const migrations = readMigrations()
    let status
    try {
      status = await migrationStatus(session, migrations)
    } finally {
      await session.close()
    }
    if (status.changed.length) {
      return {
        outcome: fail(`${where}: migration ${status.changed.join(', ')} changed after it was applied; the server refuses to start`, 'restore the original migration file (add a new migration for changes)'),
        openOnly: db,
      }
    }
    if (status.pending.length) {
      const what = status.applied === 0 ? `${where} is reachable and empty: none of the ${migrations.length} migrations is applied yet` : `${where}: ${status.pending.length} of ${migrations.length} migrations not applied yet (${status.pending.join(', ')})`
      return { outcome: warn(what, 'npm run migrate applies them (npm start does too)'), openOnly: db }
    }
    if (status.unknown.length) {
      return {
        outcome: warn(`${where}: all ${migrations.length} migrations applied, and ${status.unknown.length} this version does not know (${status.unknown.join(', ')}): a newer version has run against it`, 'run the newer version, or restore the backup taken before the upgrade'),
        db,
      }
    }
    return { outcome: ok(`${where}: reachable, all ${migrations.length} migrations applied`), db }
  } catch (err) {
    await db.close().catch(() => {})
    return { outcome: connectionFailure(err, where) }
  }
}

/** `Postgres db on host:port` (never the password), or `embedded database in <dir>`. */
function describe(config: Config): string {
  if (config.database.kind === 'pglite') return `embedded database in ${config.database.dir}`
  try {
    const u = new URL(config.database.url)
    return `Postgres database ${decodeURIComponent(u.pathname.slice(1)) || '(default)'} on ${u.hostname}:${u.port || 5432}`
  } catch {
    return 'Postgres (DATABASE_URL)'
  }
}

/** pg's errors as a line an administrator can act on. */
function connectionFailure(err: unknown, where: string): Outcome {
  const e = err as { code?: string; message?: string }
  const fix = 'check DATABASE_URL (user, password, host, port, database name) and that Postgres runs and accepts connections from this machine'
  switch (e.code) {
    case 'ECONNREFUSED':
      return fail(`${where}: connection refused: Postgres is not running there, or listens elsewhere`, fix)
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return fail(`${where}: the host name does not resolve (${e.code})`, fix)
    case '3D000':
      return fail(`${where}: the database does not exist (the server does not create databases)`, 'create it (createdb, or CREATE DATABASE), then npm run migrate')
    case '28P01':
    case '28000':
      return fail(`${where}: Postgres refused the login (${e.message})`, fix)
    default:
      return fail(`${where}: ${e.message ?? String(err)}`, fix)
  }
}
