import { describe, expect, it } from 'vitest'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { openDatabase } from '../../src/storage/database.js'

describe('isDatabaseUnavailable', () => {
  it('recognises an unreachable database behind a raw query (P2010) as it does behind a model query', async () => {
    // Port 1 on localhost refuses at once; no server is needed.
    const db = await openDatabase({ kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/none', poolMax: 1, statementTimeoutMs: 1000, connectTimeoutMs: 1000 })
    try {
      const raw = await db.prisma.$queryRaw`SELECT 1`.catch((err: unknown) => err)
      expect(raw).toMatchObject({ code: 'P2010' })
      expect(isDatabaseUnavailable(raw)).toBe(true)
      const model = await db.prisma.team.count().catch((err: unknown) => err)
      expect(isDatabaseUnavailable(model)).toBe(true)
      // A raw query that fails on its own merits is not an outage.
      expect(isDatabaseUnavailable({ name: 'PrismaClientKnownRequestError', code: 'P2010', meta: { driverAdapterError: { cause: { kind: 'postgres', code: '42601' } } } })).toBe(false)
    } finally {
      await db.close()
    }
  })
})
