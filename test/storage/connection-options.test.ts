/**
 * The server's Postgres connections plan its named statements once (plan_cache_mode, storage/database.ts),
 * also when DATABASE_URL carries libpq's `options` parameter: pg lets that parameter replace the setting
 * given beside it, which dropped plan_cache_mode (a custom plan of the check-in lookup on every execution).
 */
import { describe, expect, it } from 'vitest'
import { connectionOptions, openDatabase } from '../../src/storage/database.js'
import { hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'

const GENERIC = '-c plan_cache_mode=force_generic_plan'

describe('connectionOptions', () => {
  it('adds plan_cache_mode to a URL without options, and leaves the URL as it is', () => {
    for (const url of ['postgres://mdm:pw@db.internal:5432/mdm', 'postgres://mdm@db.internal/mdm?sslmode=require&application_name=x']) {
      expect(connectionOptions(url)).toEqual({ connectionString: url, options: GENERIC })
    }
  })

  it("keeps the URL's own options beside it, and takes the parameter out of the URL (where it would replace both)", () => {
    expect(connectionOptions('postgres://mdm@db.internal/mdm?sslmode=require&options=-c%20search_path%3Dmdm&connect_timeout=3')).toEqual({
      connectionString: 'postgres://mdm@db.internal/mdm?sslmode=require&connect_timeout=3',
      options: `-c search_path=mdm ${GENERIC}`,
    })
    expect(connectionOptions('postgres://mdm@db.internal/mdm?options=-c+work_mem%3D8MB')).toEqual({
      connectionString: 'postgres://mdm@db.internal/mdm',
      options: `-c work_mem=8MB ${GENERIC}`,
    })
  })

  it('lets a URL that sets plan_cache_mode itself decide it', () => {
    expect(connectionOptions('postgres://mdm@db.internal/mdm?options=-c%20plan_cache_mode%3Dauto').options).toBe('-c plan_cache_mode=auto')
  })
})

describe.runIf(hasPostgres)('a Postgres connection opened with options in DATABASE_URL', () => {
  it("has both the URL's settings and plan_cache_mode, on Prisma's queries and on the named statements' (one pool)", async () => {
    const url = new URL(TEST_DATABASE_URL!)
    url.searchParams.set('options', '-c work_mem=8MB')
    const db = await openDatabase({ kind: 'postgres', url: url.toString(), poolMax: 1, statementTimeoutMs: 5000, connectTimeoutMs: 5000 })
    try {
      const [prisma] = await db.prisma.$queryRaw<{ mode: string; mem: string }[]>`SELECT current_setting('plan_cache_mode') AS mode, current_setting('work_mem') AS mem`
      expect(prisma).toEqual({ mode: 'force_generic_plan', mem: '8MB' })
      const [named] = await db.sql.query<{ mode: string; mem: string }>(
        { name: 'test_connection_settings', text: "SELECT current_setting('plan_cache_mode') AS mode, current_setting('work_mem') AS mem" },
        [],
      )
      expect(named).toEqual({ mode: 'force_generic_plan', mem: '8MB' })
    } finally {
      await db.close()
    }
  })
})
