/**
 * What every fault drill needs: simulated devices (src/device) talking HTTP to a server process, steady
 * load of check-ins and command acknowledgements with commands queued through the admin API, a record of
 * every answer (status, Retry-After, time), and afterwards a reading of the database that says whether
 * every answer that was 200 is reflected exactly once, and whether anything is half written.
 *
 * RELIABILITY_LONG=1 (npm run test:reliability) asks for the long form: more devices, longer load.
 */
import { createHash, randomUUID } from 'node:crypto'
import pg from 'pg'
import { answerCommand } from '../../src/device/answers.js'
import { SimulatedDevice } from '../../src/device/device.js'
import { enrollmentSteps } from '../../src/device/flow.js'
import { httpTransport, TransportError, type Transport, type TransportResponse } from '../../src/device/transport.js'
import { buildCommandReport, COMMAND_CONTENT_TYPE } from '../../src/protocol/checkin.js'
import { readCommand } from '../../src/protocol/commands.js'
import { parsePlistDict } from '../../src/protocol/plist.js'
import { ADMIN_TOKEN } from '../helpers/server-process.js'

export const LONG = process.env.RELIABILITY_LONG === '1'

/** A test's timeout: `ms` for the short form, four times that for the long one. */
export function timeout(ms: number): number {
  return LONG ? ms * 4 : ms
}

/** A request slower than this is a hang (the machine is loaded: generous; the server's own bounds are seconds). */
export const HANG_MS = 25_000

export interface Answer {
  method: string
  path: string
  /** HTTP status, or the network error's code. */
  status: number | string
  retryAfter?: string
  startedAt: number
  ms: number
  /** The first POST to the enroll URL, without a token: 401 is its expected answer. */
  challenge: boolean
}

/** Every request the devices and the administrator make, recorded. */
export class Recorder {
  readonly answers: Answer[] = []

  wrap(inner: Transport): Transport {
    return {
      request: async (method, url, init = {}) => {
        const startedAt = Date.now()
        const challenge = method === 'POST' && /\/enroll/.test(url) && !init.headers?.authorization
        const path = new URL(url).pathname
        try {
          const res = await inner.request(method, url, init)
          this.answers.push({ method, path, status: res.status, retryAfter: res.headers['retry-after'], startedAt, ms: Date.now() - startedAt, challenge })
          return res
        } catch (err) {
          this.answers.push({ method, path, status: err instanceof TransportError ? err.code : 'error', startedAt, ms: Date.now() - startedAt, challenge })
          throw err
        }
      },
    }
  }

  /** Answers no device or administrator should ever get, whatever the fault: 401/403 (except the enroll challenge), any 5xx but 503, a 503 without Retry-After, a dropped connection. */
  wrong(): Answer[] {
    return this.answers.filter((a) => {
      if (typeof a.status === 'string') return a.status !== 'ETIMEDOUT'
      if (a.status === 503) return !a.retryAfter
      if (a.status === 401) return !a.challenge
      return a.status === 403 || a.status >= 500 || (a.status >= 400 && a.status !== 401)
    })
  }

  hangs(): Answer[] {
    return this.answers.filter((a) => a.status === 'ETIMEDOUT' || a.ms > HANG_MS)
  }

  count(status: number): number {
    return this.answers.filter((a) => a.status === status).length
  }

  /** The figures every drill reports (test/helpers/figures.ts): requests, accepted, refused, 5xx, hangs, 503s, no answer. */
  figures(answers = this.answers): Record<string, number> {
    const n = (f: (a: Answer) => boolean) => answers.filter(f).length
    const status = (a: Answer) => (typeof a.status === 'number' ? a.status : 0)
    return {
      inputs: answers.length,
      accepted: n((a) => status(a) > 0 && status(a) < 400),
      // The enroll challenge's 401 is the protocol, not a refusal.
      refused: n((a) => status(a) >= 400 && !(a.challenge && status(a) === 401)),
      '5xx': n((a) => status(a) >= 500 && status(a) !== 503),
      hangs: n((a) => a.status === 'ETIMEDOUT' || a.ms > HANG_MS),
      '503s': n((a) => status(a) === 503),
      // The connection refused or reset (the process was killed): the client retries, nothing is promised.
      'no answer': n((a) => typeof a.status === 'string' && a.status !== 'ETIMEDOUT'),
    }
  }
}

/** A device and what the server said 200 to. */
export interface Tracked {
  device: SimulatedDevice
  /** Steps that got their 200 (scep: the certificate came back; authenticate; token-update). */
  done: Set<string>
  /** The enrollment's row id, once the admin API named it. */
  rowId?: string
  busy: boolean
}

export class Fleet {
  readonly recorder = new Recorder()
  readonly transport: Transport
  readonly devices: Tracked[] = []
  /** Command UUIDs the admin API answered 201 for. */
  readonly queued = new Set<string>()
  /** Command UUIDs whose Acknowledged report got a 200. */
  readonly acknowledged = new Set<string>()
  enrollFailures = 0
  /** Requests sent to each server process, by base URL. */
  readonly hits = new Map<string, number>()
  private bases: string[]
  private counter = 0

  /**
   * `bases`: the server processes' http://127.0.0.1:<port>; each request goes to a random one (URLs in
   * the profile name the first, SERVER_URL; the transport moves them).
   */
  constructor(bases: string | string[], private readonly domain = 'drill.example.test') {
    this.bases = Array.isArray(bases) ? bases : [bases]
    const http = httpTransport({ timeoutMs: HANG_MS + 5000 })
    const spread: Transport = {
      request: (method, url, init) => {
        const u = new URL(url)
        const base = this.bases[Math.floor(Math.random() * this.bases.length)]!
        this.hits.set(base, (this.hits.get(base) ?? 0) + 1)
        u.host = new URL(base).host
        return http.request(method, u.toString(), init)
      },
    }
    this.transport = this.recorder.wrap(spread)
  }

  /** Moves the fleet to other server processes (after a restart on a new port). */
  retarget(bases: string | string[]): void {
    this.bases = Array.isArray(bases) ? bases : [bases]
  }

  private get base(): string {
    return this.bases[0]!
  }

  /** Keys made before the clock starts (RSA key generation is the device's cost, not the server's). */
  async prepare(n: number): Promise<SimulatedDevice[]> {
    const out: SimulatedDevice[] = []
    for (let i = 0; i < n; i++) {
      const device = new SimulatedDevice({ transport: this.transport, userIdentifier: `drill${this.counter++}-${randomUUID().slice(0, 8)}@${this.domain}` })
      await device.prepare()
      out.push(device)
    }
    return out
  }

  /** Enrolls one device (development sign-in, recorded enroll body, SCEP, Authenticate, TokenUpdate); false if a step failed. */
  async enroll(device: SimulatedDevice): Promise<boolean> {
    const tracked: Tracked = { device, done: new Set(), busy: false }
    this.devices.push(tracked)
    try {
      await enrollmentSteps(device, { enrollUrl: `${this.base}/api/mdm/apple/enroll`, signIn: { kind: 'dev' } }, async (step, body) => {
        await body()
        tracked.done.add(step)
      })
      return true
    } catch {
      this.enrollFailures++
      return false
    }
  }

  /** Devices that finished enrolling (TokenUpdate got its 200). */
  active(): Tracked[] {
    return this.devices.filter((d) => d.done.has('token-update'))
  }

  admin(method: string, path: string, body?: unknown): Promise<TransportResponse> {
    return this.transport.request(method, `${this.base}/api/v1/admin${path}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  }

  /** The administrator queues a DeviceInformation command for the device; true on 201. */
  async queueCommand(t: Tracked): Promise<boolean> {
    try {
      if (!t.rowId) {
        const res = await this.admin('GET', `/enrollments?enrollment_id=${t.device.enrollmentId}`)
        if (res.status !== 200) return false
        t.rowId = JSON.parse(res.body.toString('utf8')).items[0]?.id
        if (!t.rowId) return false
      }
      const res = await this.admin('POST', '/commands', { enrollment_ids: [t.rowId], command: { RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ProductName'] } })
      if (res.status !== 201) return false
      for (const item of JSON.parse(res.body.toString('utf8')).items as { command_uuid: string }[]) this.queued.add(item.command_uuid)
      return true
    } catch {
      return false
    }
  }

  /**
   * One command-channel session, as a device runs it: Idle, then the answer to each command handed out,
   * until an empty answer. Each report's 200 is recorded; a failure ends the session (the device retries
   * at its next check-in).
   */
  async session(t: Tracked): Promise<boolean> {
    const d = t.device
    const state = { model: d.model, enrollmentId: d.enrollmentId, channel: 'device' as const, profiles: d.profiles, apps: d.apps, identity: d.certificate }
    let report: Record<string, unknown> = { EnrollmentID: d.enrollmentId, Status: 'Idle' }
    for (let i = 0; i < 20; i++) {
      let res: TransportResponse
      try {
        res = await d.send(buildCommandReport(report as Parameters<typeof buildCommandReport>[0]), { contentType: COMMAND_CONTENT_TYPE, token: d.channelToken('device') })
      } catch {
        return false
      }
      if (res.status !== 200) return false
      if (report.Status === 'Acknowledged') this.acknowledged.add(String(report.CommandUUID))
      if (res.body.length === 0) return true
      const read = readCommand(parsePlistDict(res.body))
      if ('problem' in read) throw new Error(`unreadable command: ${read.problem}`)
      const answer = answerCommand(read.command, state)
      report = { EnrollmentID: d.enrollmentId, Status: answer.status, CommandUUID: read.commandUuid, ...answer.fields }
    }
    return true
  }

  /**
   * Steady load until `until()` says stop: `workers` loops, each taking a random idle device, sometimes
   * queueing a command for it first, then running its session. The `enroll` devices enroll meanwhile, one
   * every `enrollEveryMs`.
   */
  async load(options: { workers: number; until: () => boolean; enroll?: SimulatedDevice[]; enrollEveryMs?: number; commandRatio?: number }): Promise<{ sessions: number; failedSessions: number }> {
    let sessions = 0
    let failedSessions = 0
    const ratio = options.commandRatio ?? 0.5
    const worker = async () => {
      while (!options.until()) {
        const free = this.active().filter((t) => !t.busy)
        if (!free.length) {
          await sleep(50)
          continue
        }
        const t = free[Math.floor(Math.random() * free.length)]!
        t.busy = true
        try {
          if (Math.random() < ratio) await this.queueCommand(t)
          if (await this.session(t)) sessions++
          else {
            failedSessions++
            // A device whose check-in failed waits a little, as the 503's Retry-After asks (shortened).
            await sleep(200)
          }
        } finally {
          t.busy = false
        }
      }
    }
    const enroller = async () => {
      for (const device of options.enroll ?? []) {
        await sleep(options.enrollEveryMs ?? 0)
        if (options.until()) return
        await this.enroll(device)
      }
    }
    await Promise.all([...Array.from({ length: options.workers }, worker), enroller()])
    return { sessions, failedSessions }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** What the database holds against what the devices and the administrator were told. */
export interface Reflection {
  /** 200s (or 201s) with no row behind them. */
  lost: string[]
  /** Rows that exist more than once where the server said it wrote one. */
  duplicates: string[]
  /** Rows half written: an enrollment without its certificate binding or channel, a result without its command's status, ... */
  partial: string[]
  /**
   * Commands queued for the fleet's devices that the administrator was not told about (the answer was an
   * error, or never came). After a SIGKILL between the commit and the answer that is unavoidable; while
   * the database merely goes away it must not happen, or a retry queues the command twice.
   */
  untold: string[]
}

/**
 * Reads the database directly (the server's own code is not asked) and compares it with the fleet's
 * record: every certificate SCEP returned, every Authenticate and TokenUpdate that got 200, every queued
 * command, every acknowledged result, exactly once, and nothing half written.
 */
export async function reflect(fleet: Fleet, database: string | Query): Promise<Reflection> {
  if (typeof database !== 'string') return reflectWith(fleet, database)
  const client = new pg.Client({ connectionString: database })
  await client.connect()
  try {
    return await reflectWith(fleet, async (sql, params) => (await client.query(sql, params)).rows)
  } finally {
    await client.end()
  }
}

/** A SQL runner: pg on a Postgres server, or PGlite opened on the embedded database's directory. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Query = (sql: string, params?: unknown[]) => Promise<any[]>

async function reflectWith(fleet: Fleet, query: Query): Promise<Reflection> {
  const client = { query: async (sql: string, params?: unknown[]) => ({ rows: await query(sql, params) }) }
  {
    const lost: string[] = []
    const duplicates: string[] = []
    const partial: string[] = []
    for (const t of fleet.devices) {
      const id = t.device.enrollmentId
      if (t.done.has('scep')) {
        const fp = createHash('sha256').update(t.device.certificate!.raw).digest('hex')
        const n = Number((await client.query('SELECT count(*) FROM device_certificates WHERE fingerprint_sha256 = $1', [fp])).rows[0].count)
        if (n === 0) lost.push(`certificate of ${id}`)
        if (n > 1) duplicates.push(`certificate of ${id} x${n}`)
      }
      if (t.done.has('authenticate')) {
        const rows = (await client.query("SELECT status FROM mdm_enrollments WHERE enrollment_id = $1 AND status <> 'checked_out'", [id])).rows
        if (rows.length === 0) lost.push(`enrollment ${id}`)
        if (rows.length > 1) duplicates.push(`enrollment ${id} x${rows.length}`)
        if (t.done.has('token-update') && rows.length && rows[0].status !== 'active') lost.push(`TokenUpdate of ${id} (status ${rows[0].status})`)
      }
    }
    // The acknowledged include commands whose queueing the administrator was not told about: the server
    // committed and then could not answer (killed, or the database went away before the answer).
    const uuids = [...fleet.queued]
    const commands = new Map<string, { status: string; result: unknown; n: number }>()
    for (const row of (await client.query('SELECT command_uuid, status, result FROM mdm_commands WHERE command_uuid = ANY($1)', [[...new Set([...uuids, ...fleet.acknowledged])]])).rows) {
      const seen = commands.get(row.command_uuid)
      commands.set(row.command_uuid, { status: row.status, result: row.result, n: (seen?.n ?? 0) + 1 })
    }
    for (const uuid of uuids) {
      const c = commands.get(uuid)
      if (!c) lost.push(`queued command ${uuid}`)
      else if (c.n > 1) duplicates.push(`command ${uuid} x${c.n}`)
    }
    for (const uuid of fleet.acknowledged) {
      const c = commands.get(uuid)
      if (!c || c.status !== 'acknowledged' || c.result === null) lost.push(`result of ${uuid} (${c ? c.status : 'no row'})`)
    }
    // Half-written rows anywhere in the database (not only the fleet's): each query names what it finds.
    const checks: [string, string][] = [
      ['enrollment without a bound certificate', 'SELECT e.enrollment_id AS x FROM mdm_enrollments e WHERE NOT EXISTS (SELECT 1 FROM mdm_enrollment_certificates c WHERE c.mdm_enrollment_id = e.id)'],
      ['enrollment bound to a certificate that does not exist', 'SELECT c.device_certificate_id::text AS x FROM mdm_enrollment_certificates c LEFT JOIN device_certificates d ON d.id = c.device_certificate_id WHERE d.id IS NULL'],
      ['active enrollment without a device channel', "SELECT e.enrollment_id AS x FROM mdm_enrollments e WHERE e.status = 'active' AND NOT EXISTS (SELECT 1 FROM mdm_channels ch WHERE ch.mdm_enrollment_id = e.id AND ch.enrollment_user_id IS NULL)"],
      ['certificate without its DER', 'SELECT id::text AS x FROM device_certificates WHERE length(certificate_der) = 0'],
      ['finished command without a result', "SELECT command_uuid AS x FROM mdm_commands WHERE status IN ('acknowledged', 'error') AND (result IS NULL OR completed_at IS NULL)"],
      ['result on a command not finished', "SELECT command_uuid AS x FROM mdm_commands WHERE result IS NOT NULL AND status NOT IN ('acknowledged', 'error', 'format_error', 'not_now')"],
      ['EnrollmentID enrolled twice at once', "SELECT enrollment_id AS x FROM mdm_enrollments WHERE status <> 'checked_out' GROUP BY enrollment_id HAVING count(*) > 1"],
    ]
    for (const [what, sql] of checks) {
      for (const row of (await client.query(sql)).rows) partial.push(`${what}: ${row.x}`)
    }
    const ids = fleet.devices.map((t) => t.device.enrollmentId)
    const untold = (
      await client.query(
        "SELECT c.command_uuid AS x FROM mdm_commands c JOIN mdm_enrollments e ON e.id = c.mdm_enrollment_id WHERE e.enrollment_id = ANY($1) AND c.request_type = 'DeviceInformation'",
        [ids],
      )
    ).rows
      .map((r) => String(r.x))
      .filter((uuid) => !fleet.queued.has(uuid))
    return { lost, duplicates, partial, untold }
  }
}

/** Sizes for the short (npm test) and long (npm run test:reliability) forms. */
export const SIZE = LONG ? { devices: 24, moreDevices: 12, workers: 8, loadSeconds: 40, outageSeconds: 8 } : { devices: 4, moreDevices: 3, workers: 3, loadSeconds: 12, outageSeconds: 4 }
