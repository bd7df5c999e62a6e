/** `npm run migrate`: applies pending migrations to the configured database and exits. */
import { ConfigError, loadConfig } from '../config/index.js'
import { openDatabase } from '../storage/database.js'
import { migrate } from '../storage/migrate.js'

try {
  const config = loadConfig()
  const db = await openDatabase(config.database)
  try {
    const session = await db.openSession()
    try {
      const result = await migrate(session, undefined, (msg) => process.stdout.write(`${msg}\n`))
      process.stdout.write(result.applied.length ? `applied ${result.applied.length} migration(s)\n` : 'database is up to date\n')
      if (result.unknown.length) process.stdout.write(`warning: the database has migrations this version does not know: ${result.unknown.join(', ')}\n`)
    } finally {
      await session.close()
    }
  } finally {
    await db.close()
  }
} catch (err) {
  process.stderr.write(`${err instanceof ConfigError ? 'configuration error' : 'migration failed'}: ${(err as Error).message}\n`)
  process.exit(1)
}
