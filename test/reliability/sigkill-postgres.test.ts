/**
 * Fault drill: the server is killed (SIGKILL, no chance to clean up) under load on Postgres, and started
 * again. Afterwards nothing is half written (an enrollment without its certificate binding, a result
 * without its command's status) and every answer that was 200 is in the database.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase, hasPostgres, TEST_DATABASE_URL } from '../helpers/database.js'
import { SERVER_SECRET } from '../helpers/server-process.js'
import { reflect, timeout } from './drill.js'
import { figures, KILLS, killUnderLoad } from './sigkill.js'

const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

describe('fault drill: SIGKILL under load', () => {
  it.runIf(hasPostgres)('on Postgres: nothing half written, every 200 reflected', async () => {
    const db = await createPostgresDatabase(TEST_DATABASE_URL!, 'mdm_drill')
    cleanups.push(() => db.drop())
    const { fleet, restartMs } = await killUnderLoad({ DATABASE_URL: db.url, SERVER_SECRET }, cleanups)
    const result = await reflect(fleet, db.url)
    figures(`drill: SIGKILL under load x${KILLS}, Postgres (recovery: restart to ready)`, fleet, result, restartMs)
    expect(fleet.acknowledged.size).toBeGreaterThan(0)
    expect(fleet.recorder.answers.filter((a) => a.status === 401 && !a.challenge)).toEqual([])
    // (`untold`: commands committed just before the kill, whose answer never left: unavoidable.)
    expect({ ...result, untold: [] }).toEqual({ lost: [], duplicates: [], partial: [], untold: [] })
  }, timeout(300_000))

})
