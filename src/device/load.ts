/**
 * Load mode: N simulated devices (users `user<i>@<domain>`) enroll through the same steps as one device,
 * C at a time, then keep checking in (an Idle session each, round after round) for a given time. Every
 * step of every device is timed; the result is a table per step: count, errors by kind, p50/p95/p99 and
 * throughput. Bounded in count and time, and stoppable (`signal`). The benchmark drives it as a library.
 */
import type { ModelFamily } from '../protocol/discovery.js'
import type { Enrollment } from '../protocol/profile-rules.js'
import { SimulatedDevice } from './device.js'
import { enrollmentSteps, type StepRunner } from './flow.js'
import { StepFailure, type StepName } from './steps.js'
import type { Transport } from './transport.js'

export const LOAD_LIMITS = { devices: 10_000, concurrency: 256, durationSeconds: 3600 } as const

export interface LoadOptions {
  transport: Transport
  /** Discovery is asked here, or (with `enrollUrl`) skipped. */
  server?: string
  enrollUrl?: string
  /** Users are user<i>@domain. */
  domain: string
  devices: number
  concurrency: number
  /** How long the check-in phase lasts; 0: one Idle session per device. */
  durationSeconds?: number
  modelFamily?: ModelFamily
  /** `device`: account-driven device enrollment (each device its own UDID); unset: what discovery announces. */
  enrollment?: Enrollment
  selfSigned?: boolean
  signal?: AbortSignal
  onProgress?: (progress: LoadProgress) => void
}

export interface LoadProgress {
  phase: 'enroll' | 'check-in'
  enrolled: number
  failed: number
  devices: number
  checkins: number
  elapsedMs: number
  /** Check-in phase: seconds left. */
  remainingMs?: number
}

export interface StepStats {
  step: StepName | 'enrollment'
  count: number
  /** Failures by kind: an HTTP status (`429`), a network code (`ECONNREFUSED`) or `protocol`. */
  errors: Record<string, number>
  p50: number
  p95: number
  p99: number
  max: number
  /** Completed per second over the phase the step belongs to. */
  perSecond: number
}

export interface LoadResult {
  devices: number
  enrolled: number
  checkins: number
  enrollPhaseMs: number
  checkinPhaseMs: number
  steps: StepStats[]
  /** The first failure's text, for a hint. */
  firstError?: string
  /** How many enrolled devices went through device enrollment (mdm-adde, named by UDID). */
  deviceEnrollments: number
}

interface Samples {
  ms: number[]
  errors: Record<string, number>
}

const ORDER: (StepName | 'enrollment')[] = ['discovery', 'enroll-challenge', 'esso', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'user-channel', 'enrollment', 'commands']

export function checkLoadOptions(options: Pick<LoadOptions, 'devices' | 'concurrency' | 'durationSeconds'>): string | undefined {
  if (!Number.isInteger(options.devices) || options.devices < 1 || options.devices > LOAD_LIMITS.devices) return `--devices must be 1 to ${LOAD_LIMITS.devices}`
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1 || options.concurrency > LOAD_LIMITS.concurrency) return `--concurrency must be 1 to ${LOAD_LIMITS.concurrency}`
  const d = options.durationSeconds ?? 0
  if (!Number.isFinite(d) || d < 0 || d > LOAD_LIMITS.durationSeconds) return `--duration must be 0 to ${LOAD_LIMITS.durationSeconds} seconds`
  return undefined
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const invalid = checkLoadOptions(options)
  if (invalid) throw new Error(invalid)
  const samples = new Map<StepName | 'enrollment', Samples>()
  const sample = (step: StepName | 'enrollment') => {
    let s = samples.get(step)
    if (!s) samples.set(step, (s = { ms: [], errors: {} }))
    return s
  }
  let firstError: string | undefined
  const fail = (step: StepName | 'enrollment', err: unknown) => {
    const kind = err instanceof StepFailure ? (err.facts.networkCode ?? (err.facts.status !== undefined ? String(err.facts.status) : 'protocol')) : 'simulator'
    const s = sample(step)
    s.errors[kind] = (s.errors[kind] ?? 0) + 1
    firstError ??= err instanceof Error ? err.message : String(err)
  }
  const run: StepRunner = async (step, body) => {
    const t = performance.now()
    try {
      await body()
      sample(step).ms.push(performance.now() - t)
    } catch (err) {
      fail(step, err)
      throw err
    }
  }

  const started = performance.now()
  const enrolled: SimulatedDevice[] = []
  let failed = 0
  let checkins = 0
  let phase: LoadProgress['phase'] = 'enroll'
  let checkinStarted = 0
  let checkinEnds = 0
  const progress = () =>
    options.onProgress?.({
      phase,
      enrolled: enrolled.length,
      failed,
      devices: options.devices,
      checkins,
      elapsedMs: performance.now() - started,
      remainingMs: phase === 'check-in' ? Math.max(0, checkinEnds - performance.now()) : undefined,
    })

  // Enrollment phase: C workers take the next device until all N have tried.
  let next = 0
  const enrollWorker = async () => {
    while (next < options.devices && !options.signal?.aborted) {
      const i = next++
      const device = new SimulatedDevice({ transport: options.transport, model: options.modelFamily, userIdentifier: `user${i}@${options.domain}`, enrollBody: options.selfSigned ? 'self-signed' : 'recorded', enrollment: options.enrollment })
      await device.prepare()
      const t = performance.now()
      try {
        await enrollmentSteps(device, { server: options.server, enrollUrl: options.enrollUrl, signIn: { kind: 'dev' } }, run)
        sample('enrollment').ms.push(performance.now() - t)
        enrolled.push(device)
      } catch (err) {
        if (!(err instanceof StepFailure)) fail('enrollment', err)
        failed++
      }
      progress()
    }
  }
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.devices) }, enrollWorker))
  const enrollPhaseMs = performance.now() - started

  // Check-in phase: round after round of one Idle session per device until the time is up (at least one round).
  phase = 'check-in'
  checkinStarted = performance.now()
  checkinEnds = checkinStarted + (options.durationSeconds ?? 0) * 1000
  let cursor = 0
  let round = 0
  const checkinWorker = async () => {
    while (!options.signal?.aborted && enrolled.length > 0) {
      if (cursor >= enrolled.length) {
        if (performance.now() >= checkinEnds) return
        cursor = 0
        round++
      }
      if (round > 0 && performance.now() >= checkinEnds) return
      const device = enrolled[cursor++]!
      await run('commands', async () => {
        if (device.model.userChannel) await device.idle('user')
        await device.idle('device')
        return {}
      }).catch(() => {})
      checkins++
      progress()
    }
  }
  const ticker = setInterval(progress, 200)
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, Math.max(1, enrolled.length)) }, checkinWorker))
  } finally {
    clearInterval(ticker)
  }
  const checkinPhaseMs = performance.now() - checkinStarted
  progress()

  const steps = ORDER.filter((s) => samples.has(s)).map((step) => stats(step, samples.get(step)!, step === 'commands' ? checkinPhaseMs : enrollPhaseMs))
  const deviceEnrollments = enrolled.filter((d) => d.enrollment === 'device').length
  return { devices: options.devices, enrolled: enrolled.length, checkins, enrollPhaseMs, checkinPhaseMs, steps, firstError, deviceEnrollments }
}

function stats(step: StepName | 'enrollment', s: Samples, phaseMs: number): StepStats {
  const sorted = [...s.ms].sort((a, b) => a - b)
  const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0)
  const errors = Object.values(s.errors).reduce((a, b) => a + b, 0)
  return {
    step,
    count: sorted.length + errors,
    errors: s.errors,
    p50: round1(pct(50)),
    p95: round1(pct(95)),
    p99: round1(pct(99)),
    max: round1(sorted.at(-1) ?? 0),
    perSecond: phaseMs > 0 ? round1((sorted.length * 1000) / phaseMs) : 0,
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10
}

/** The table the command prints (Markdown, so it pastes into an issue or a note). */
export function formatLoadTable(result: LoadResult): string {
  const rows = result.steps.map((s) => [
    s.step === 'commands' ? 'check-in (Idle)' : s.step === 'enrollment' ? 'whole enrollment' : s.step,
    String(s.count),
    Object.keys(s.errors).length ? Object.entries(s.errors).map(([k, n]) => `${n} × ${k}`).join(', ') : '0',
    s.p50.toFixed(1),
    s.p95.toFixed(1),
    s.p99.toFixed(1),
    s.perSecond.toFixed(1),
  ])
  const header = ['step', 'count', 'errors', 'p50 ms', 'p95 ms', 'p99 ms', 'per s']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`
  const rule = `|${widths.map((w, i) => (i === 0 || i === 2 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`
  const kind = result.deviceEnrollments === 0 ? '' : result.deviceEnrollments === result.enrolled ? ' (account-driven device enrollment)' : ` (${result.deviceEnrollments} by device enrollment)`
  const summary = `${result.enrolled}/${result.devices} devices enrolled${kind} in ${(result.enrollPhaseMs / 1000).toFixed(1)} s; ${result.checkins} check-in sessions in ${(result.checkinPhaseMs / 1000).toFixed(1)} s (device RSA keys are made before the clock starts)`
  return [line(header), rule, ...rows.map(line), '', summary].join('\n')
}
