/**
 * The SIGKILL drill's procedure, shared by its Postgres and PGlite forms (sigkill-*.test.ts).
 */
import { expect } from 'vitest'
import { recordFigures } from '../helpers/figures.js'
import { freePort } from '../helpers/ports.js'
import { startServer, type ServerProcess } from '../helpers/server-process.js'
import { Fleet, LONG, SIZE, sleep, type reflect } from './drill.js'

export const KILLS = LONG ? 3 : 1

/**
 * Enrolls devices, then `KILLS` times: load, SIGKILL at a random moment, start again on the same port.
 * Returns the fleet after every device checked in once more on the last server, and that server.
 */
export async function killUnderLoad(env: Record<string, string>, cleanups: (() => unknown)[]): Promise<{ fleet: Fleet; server: ServerProcess; restartMs: number[] }> {
  const port = await freePort()
  let server = await startServer(env, port)
  cleanups.push(() => server.kill())
  await server.ready(180_000)
  const fleet = new Fleet(server.base)
  for (const device of await fleet.prepare(SIZE.devices)) expect(await fleet.enroll(device)).toBe(true)
  const restartMs: number[] = []
  for (let k = 0; k < KILLS; k++) {
    const more = await fleet.prepare(SIZE.moreDevices)
    let stop = false
    const load = fleet.load({ workers: SIZE.workers, until: () => stop, enroll: more, enrollEveryMs: 500 })
    await sleep(1500 + Math.random() * 2000)
    await server.kill()
    stop = true
    await load
    const t = Date.now()
    server = await startServer(env, port)
    await server.ready(180_000)
    restartMs.push(Date.now() - t)
  }
  for (const t of fleet.active()) expect(await fleet.session(t)).toBe(true)
  return { fleet, server, restartMs }
}

export function figures(suite: string, fleet: Fleet, result: Awaited<ReturnType<typeof reflect>>, restartMs: number[]) {
  recordFigures(suite, {
    ...fleet.recorder.figures(),
    'lost rows': result.lost.length,
    'duplicate rows': result.duplicates.length,
    'half-written rows': result.partial.length,
    'queued behind an error': result.untold.length,
    'recovery s': Math.round(Math.max(...restartMs) / 100) / 10,
  })
}

