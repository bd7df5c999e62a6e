/**
 * The database as a named plugin: opens it (Postgres, or embedded PGlite), applies pending migrations, and
 * decorates `app.db` and `app.migrations`. It closes the database when the app closes, unless the caller
 * handed in one it owns (tests, a second app instance).
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config/index.js'
import { openDatabase, type Database, type DatabaseOptions } from '../storage/database.js'
import { migrate, readMigrations, type Migration } from '../storage/migrate.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
    /** The migrations this code knows; /readyz compares them with the database. */
    migrations: Migration[]
  }
}

export interface DatabasePluginOptions {
  config: Config
  /** An open database to use (and not close). */
  database?: Database
  /** Options overriding `config.database`. */
  databaseOptions?: DatabaseOptions
}

export default fp(
  async (app: FastifyInstance, options: DatabasePluginOptions) => {
    const db = options.database ?? (await openDatabase(options.databaseOptions ?? options.config.database, app.log))
    if (!options.database) app.addHook('onClose', async () => db.close())
    const migrations = readMigrations()
    const session = await db.openSession()
    try {
      const result = await migrate(session, migrations, (msg) => app.log.info(msg))
      if (result.unknown.length) {
        app.log.warn({ migrations: result.unknown }, 'the database has migrations this version does not know: a newer version of the server has run against it')
      }
    } finally {
      await session.close()
    }
    app.decorate('db', db)
    app.decorate('migrations', migrations)
  },
  { name: 'database' },
)
