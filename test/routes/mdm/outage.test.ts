/**
 * SECURITY.md row 20 on the check-in channel: while Postgres is unreachable every request is 503 (never
 * 401 or 403, which would make the device sign in again or give up), and the device's retry after the
 * database returns succeeds with nothing lost.
 */
import { describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { hasPostgres } from '../../helpers/database.js'
import { activeDevice, enrollDevice } from '../../helpers/device.js'
import { createProxiedTestDatabase } from '../../helpers/tcp-proxy.js'

// Cutting the database needs a Postgres server behind a proxy; PGlite runs in-process.
describe.runIf(hasPostgres)('database outage', () => {
  it('answers 503 on both channels, then the retried messages succeed', async () => {
    const { database, proxy, drop } = await createProxiedTestDatabase()
    let t: TestApp | undefined
    try {
      t = await buildTestApp({ database })
      const active = await activeDevice(t.app)
      const fresh = await enrollDevice(t.app)

      await proxy.cut()
      for (const res of [await active.idle(), await active.tokenUpdate(), await active.checkOut(), await fresh.authenticate()]) {
        expect(res.statusCode, res.body).toBe(503)
        expect(res.headers['retry-after']).toBe('5')
        expect(res.headers['www-authenticate']).toBeUndefined()
      }

      await proxy.restore()
      expect((await fresh.authenticate()).statusCode).toBe(200)
      expect((await fresh.tokenUpdate()).statusCode).toBe(200)
      expect((await active.idle()).statusCode).toBe(200)
      expect((await active.checkOut()).statusCode).toBe(200)
      const prisma = t.app.db.prisma
      expect((await prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: fresh.enrollmentId } })).status).toBe('active')
      expect((await prisma.mdmEnrollment.findFirstOrThrow({ where: { enrollmentId: active.enrollmentId } })).status).toBe('checked_out')
      // The 503s were logged as the database being away, not as refusals.
      expect(t.logs().filter((l) => l.msg === 'dependency unavailable').length).toBeGreaterThanOrEqual(4)
    } finally {
      await t?.close()
      await drop()
    }
  }, 90_000)
})
