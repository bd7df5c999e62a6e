import { afterEach, describe, expect, it } from 'vitest'
import { openDatabase, type Database } from '../../src/storage/database.js'
import { migrate, readMigrations } from '../../src/storage/migrate.js'
import { createTestDatabase, hasPostgres, type TestDatabase } from '../helpers/database.js'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function fresh(): Promise<{ database: TestDatabase; db: Database }> {
  const database = await createTestDatabase()
  const db = await openDatabase(database.options)
  cleanup.push(() => database.drop(), () => db.close())
  return { database, db }
}

describe('migrations', () => {
  it('are found in order with stable names', () => {
    const names = readMigrations().map((m) => m.name)
    expect(names.length).toBeGreaterThan(0)
    expect([...names].sort()).toEqual(names)
  })

  it('apply each migration once and record it', async () => {
    const { db } = await fresh()
    const session = await db.openSession()
    const first = await migrate(session)
    expect(first.applied).toEqual(readMigrations().map((m) => m.name))
    const second = await migrate(session)
    expect(second.applied).toEqual([])
    const rows = await session.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name')
    expect(rows.map((r) => r.name)).toEqual(first.applied)
    await session.close()
  })

  it('roll back a failing migration completely and name it', async () => {
    const { db } = await fresh()
    const session = await db.openSession()
    const broken = [{ name: '29990101000000_broken', sql: 'CREATE TABLE half_done (id int); SELECT no_such_function();', checksum: 'x' }]
    await expect(migrate(session, broken)).rejects.toThrow(/migration 29990101000000_broken failed/)
    const tables = await session.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'")
    expect(tables).toEqual([])
    expect(await session.query("SELECT 1 FROM schema_migrations WHERE name = '29990101000000_broken'")).toEqual([])
    await session.close()
  })

  it('refuse to run when an applied migration was edited', async () => {
    const { db } = await fresh()
    const session = await db.openSession()
    const migrations = readMigrations()
    await migrate(session, migrations)
    const edited = migrations.map((m, i) => (i === 0 ? { ...m, checksum: 'changed' } : m))
    await expect(migrate(session, edited)).rejects.toThrow(/was changed after it was applied/)
    await session.close()
  })

  // Two server processes starting at once against one Postgres server. PGlite is a single in-process
  // connection guarded by a directory lock, so this case only exists on a Postgres server.
  it.runIf(hasPostgres)('are safe when two migrators start at once', async () => {
    const { database } = await fresh()
    const a = await openDatabase(database.options)
    const b = await openDatabase(database.options)
    cleanup.push(() => a.close(), () => b.close())
    const [sa, sb] = await Promise.all([a.openSession(), b.openSession()])
    const [ra, rb] = await Promise.all([migrate(sa), migrate(sb)])
    const all = readMigrations().map((m) => m.name)
    // Exactly one of them applied everything; the other found nothing left to do.
    expect([ra.applied, rb.applied].sort((x, y) => x.length - y.length)).toEqual([[], all])
    const rows = await sa.query<{ n: string }>('SELECT count(*)::text AS n FROM schema_migrations')
    expect(rows[0]!.n).toBe(String(all.length))
    await sa.close()
    await sb.close()
  })
})
