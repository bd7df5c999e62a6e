/**
 * WORKERS > 1: this process becomes a supervisor (node:cluster primary) that runs the server in that many
 * worker processes sharing the port. It holds no database connection and answers no request.
 *
 * - The first worker starts alone: it runs the migrations and creates what a first start creates (keys,
 *   the Default team) and prints the start banner; the others start once it listens.
 * - A worker that exits before it ever listened (a configuration error, an unreachable database) stops the
 *   whole server with its exit code: restarting it would fail the same way.
 * - A worker that dies later is replaced; more than CRASH_LIMIT deaths within CRASH_WINDOW_MS stop the
 *   server (exit 1) instead of restarting forever.
 * - Workers get MALLOC_ARENA_MAX (config, default 2; docs/deploy.md#memory).
 * - SIGTERM/SIGINT are passed to every worker, which finish their in-flight requests and close their pool
 *   (server.ts); the supervisor exits 0 once all have exited 0, 1 otherwise or after SHUTDOWN_GRACE_MS.
 */
import cluster, { type Worker } from 'node:cluster'
import pino from 'pino'
import type { Config } from './config/index.js'
import { loggerOptions } from './logging.js'

/** Sent by a worker to the supervisor once it listens. */
export const READY_MESSAGE = 'byod-mdm:listening'

const CRASH_LIMIT = 5
const CRASH_WINDOW_MS = 60_000
const SHUTDOWN_GRACE_MS = 20_000

export function isWorkerProcess(): boolean {
  return cluster.isWorker
}

/** The worker the supervisor started first (cluster ids are never reused): it prints the start banner. */
export function isFirstWorker(): boolean {
  return cluster.worker?.id === 1
}

/** In a worker: tells the supervisor that this process listens. */
export function reportListening(): void {
  if (cluster.isWorker) process.send?.(READY_MESSAGE)
}

export function runSupervisor(config: Config): void {
  const log = pino({ ...loggerOptions(config.logLevel), base: { pid: process.pid, role: 'supervisor' } })
  const ready = new Set<Worker>()
  const crashes: number[] = []
  let stopping = false
  let exitCode = 0

  const fork = (first: boolean): Worker => {
    // Few glibc malloc arenas: per-thread arenas keep ~60 MB per process (docs/deploy.md#memory).
    const worker = cluster.fork({ MALLOC_ARENA_MAX: String(config.workerMallocArenaMax) })
    worker.on('message', (message) => {
      if (message !== READY_MESSAGE) return
      const firstReady = ready.size === 0 && first
      ready.add(worker)
      log.info({ worker: worker.process.pid, listening: ready.size, workers: config.workers }, 'worker listening')
      // The first worker has migrated and created what a first start creates: the others may start.
      if (firstReady) for (let i = 1; i < config.workers; i++) fork(false)
    })
    return worker
  }

  const stopAll = (signal: NodeJS.Signals) => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal)
    const timer = setTimeout(() => {
      log.error({ graceMs: SHUTDOWN_GRACE_MS }, 'workers did not stop in time; killing them')
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL')
      process.exit(1)
    }, SHUTDOWN_GRACE_MS)
    timer.unref()
  }

  const shutdown = (signal: NodeJS.Signals, code = 0) => {
    if (stopping) return
    stopping = true
    exitCode = code
    log.info({ signal }, 'shutting down: stopping the workers')
    stopAll('SIGTERM')
  }

  cluster.on('exit', (worker, code, signal) => {
    const wasReady = ready.delete(worker)
    if (stopping) {
      // Ended by the signal passed on to it (before it could handle it, while still starting): a clean stop.
      const stoppedBySignal = code === null && (signal === 'SIGTERM' || signal === 'SIGINT')
      if (code !== 0 && !stoppedBySignal) exitCode = 1
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(exitCode)
      return
    }
    if (!wasReady) {
      // It never listened: whatever stopped it (its own stderr says what) would stop a replacement too.
      log.error({ worker: worker.process.pid, code, signal }, 'a worker stopped before it listened; stopping the server')
      shutdown('SIGTERM', code || 1)
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(exitCode)
      return
    }
    const now = Date.now()
    crashes.push(now)
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift()
    if (crashes.length > CRASH_LIMIT) {
      log.error({ crashes: crashes.length, windowMs: CRASH_WINDOW_MS }, 'workers keep dying; stopping the server')
      shutdown('SIGTERM', 1)
      return
    }
    log.error({ worker: worker.process.pid, code, signal }, 'a worker died; starting another')
    fork(false)
  })

  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  log.info({ workers: config.workers }, 'starting workers')
  fork(true)
}
