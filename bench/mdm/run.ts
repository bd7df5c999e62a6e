/**
 * The check-in hot path against the database's limit (issue 15), in one run on this machine:
 *
 * 1. A production build of the server (`dist/server.js`) on a throwaway Postgres database, and the
 *    baseline (baseline-server.ts: a bare Fastify route doing one primary-key query) on the same server.
 * 2. DEVICES simulated devices (src/device) enroll for real over HTTP: development sign-in, profile,
 *    SCEP, Authenticate, TokenUpdate. Client-side key generation is done before the clock starts.
 *    Enrollments per second are reported.
 * 3. Signed `Idle` reports with an empty queue, each request from the next device (autocannon replays
 *    each device's own signed Idle: a device's Idle body is the same every time, and so its signature),
 *    against the baseline, in alternating rounds. Target: at least 0.5x the baseline.
 * 4. The command-delivery cycle: commands queued by SQL for the benchmark's devices; each device sends
 *    Idle, gets a command, answers Acknowledged (signed ahead of time), gets the next. Target: commands
 *    per second at least 0.25x the baseline's requests per second.
 * 5. Idle on a copy of the database to which ENROLLMENTS synthetic enrollments and COMMANDS commands
 *    were added by SQL (dataset.ts), against Idle on the original, two servers in alternating rounds.
 *    Target: within 10% of the empty-database figure.
 * 6. WORKERS=2 against WORKERS=1 (node:cluster), and the resident memory: the server's peak under this
 *    load (target below 200 MB per process on Postgres) and an idle embedded (PGlite) server right after
 *    its first start (target below 300 MB).
 *
 * The load runs in this process, the servers in their own. Ratios are taken within the run, so a busy
 * machine slows both sides alike. Prints a markdown table; with BENCH_WRITE=1 also writes its section of
 * bench/RESULTS.md with the machine, date and commit.
 *
 *   npm run bench:mdm
 *   BENCH_DEVICES=128 BENCH_SECONDS=15 BENCH_ROUNDS=3 BENCH_ENROLLMENTS=100000 BENCH_COMMANDS=1000000 npm run bench:mdm
 *   BENCH_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" BENCH_ONLY=idle npm run bench:mdm
 *
 * BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) must allow CREATE DATABASE.
 */
import { spawn, type ChildProcess, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, totalmem, tmpdir } from 'node:os'
import path from 'node:path'
import autocannon from 'autocannon'
import { SimulatedDevice } from '../../src/device/device.js'
import { enrollmentSteps } from '../../src/device/flow.js'
import { httpTransport } from '../../src/device/transport.js'
import { buildCommandReport, COMMAND_CONTENT_TYPE } from '../../src/protocol/checkin.js'
import { createPostgresDatabase, withClient } from '../../test/helpers/database.js'
import { freePort } from '../../test/helpers/ports.js'
import { childPids, cpuMsOf, cpuOfCommand, cpuSince, memoryOf, stopChild, waitFor, type Memory } from '../lib/processes.js'
import { RawConnection, requestBytes } from '../lib/raw-http.js'
import { median } from '../lib/stats.js'
import { generateDataset } from './dataset.js'

/** Replaces the `## title` section of bench/RESULTS.md (other suites write their own sections). */
function writeSection(title: string, body: string): void {
  const file = path.join(ROOT, 'bench/RESULTS.md')
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark and reliability results\n'
  const section = `## ${title}\n\n${body.trim()}\n`
  const start = text.indexOf(`\n## ${title}\n`)
  if (start < 0) return writeFileSync(file, `${text.trimEnd()}\n\n${section}`)
  const next = text.indexOf('\n## ', start + 1)
  writeFileSync(file, `${text.slice(0, start + 1)}${section}${next < 0 ? '' : `\n${text.slice(next + 1)}`}`)
}

const env = process.env
const DEVICES = Number(env.BENCH_DEVICES ?? 64)
const SECONDS = Number(env.BENCH_SECONDS ?? 10)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2)
/** Rounds of the large-database comparison: its ratio is the median of the rounds' (one noisy round moved it by 0.1). */
const LARGE_ROUNDS = Number(env.BENCH_LARGE_ROUNDS ?? 5)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const ENROLL_CONCURRENCY = Number(env.BENCH_ENROLL_CONCURRENCY ?? 8)
const ENROLLMENTS = Number(env.BENCH_ENROLLMENTS ?? 100_000)
const COMMANDS = Number(env.BENCH_COMMANDS ?? 1_000_000)
/** Enough that the cycle does not run out within BENCH_SECONDS (64 x 200 ran out at 1,280/s in 10 s). */
const COMMANDS_PER_DEVICE = Number(env.BENCH_COMMANDS_PER_DEVICE ?? 600)
const ADMIN_URL = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const ONLY = env.BENCH_ONLY?.split(',')
/** One secret for every server started on the benchmark's database: it seals the keys stored there. */
const SERVER_SECRET = randomBytes(32).toString('base64')
const ROOT = path.resolve(import.meta.dirname, '../..')
const run = (part: string) => !ONLY || ONLY.includes(part)

interface Row {
  run: string
  rps: number
  /** Server CPU (user + system, all its processes) per request, ms. */
  cpu?: number
  /** CPU of every postgres process on this machine per request, ms (the benchmark's database is the only busy one). */
  dbCpu?: number
  p50: number
  p99: number
  errors: number
  rss?: string
}

const rows: Row[] = []
const targets: { name: string; value: string; target: string; pass: boolean }[] = []
const notes: string[] = []

interface Server {
  base: string
  child: ChildProcess
  /** The processes that serve (the workers under WORKERS > 1, else the server itself). */
  pids(): number[]
  stop(): Promise<void>
}

async function startServer(databaseUrl: string | undefined, extra: Record<string, string> = {}): Promise<Server> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mdm-bench-'))
  const child = spawn(process.execPath, [...(env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []), '--enable-source-maps', 'dist/server.js'], {
    cwd: ROOT,
    env: {
      PATH: env.PATH,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      SERVER_URL: base,
      ...(databaseUrl ? { DATABASE_URL: databaseUrl, SERVER_SECRET } : {}),
      DATA_DIR: dataDir,
      ORG_NAME: 'Bench',
      // info, as a server runs; BENCH_LOG_LEVEL=warn measures what the request lines cost.
      LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'info',
      // As the Docker image and the systemd unit of docs/deploy.md run it (docs/deploy.md#memory).
      MALLOC_ARENA_MAX: env.BENCH_MALLOC_ARENA_MAX ?? '2',
      ENROLL_DOMAINS: 'bench.example',
      // The load comes from one address: the per-address limits would measure themselves.
      ENROLL_RATE_LIMIT: '1000000',
      SSO_RATE_LIMIT: '1000000',
      OAUTH2_RATE_LIMIT: '1000000',
      ...extra,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  await waitFor(`${base}/readyz`, child)
  return {
    base,
    child,
    pids: () => {
      const workers = childPids(child.pid!).filter((pid) => memoryOf(pid))
      return workers.length ? workers : [child.pid!]
    },
    async stop() {
      await stopChild(child)
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

async function startBaseline(databaseUrl: string): Promise<Server> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/mdm/baseline-server.ts'], {
    cwd: ROOT,
    env: { PATH: env.PATH, NODE_ENV: 'production', PORT: String(port), BASELINE_DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${base}/healthz`, child)
  return { base, child, pids: () => [child.pid!], stop: () => stopChild(child) }
}

/** A device enrolled for real, and what it sends on the command channel, signed once. */
interface BenchDevice {
  sim: SimulatedDevice
  path: string
  idle: { headers: Record<string, string>; body: Buffer }
}

/** A command's Acknowledged report, signed ahead of time by the device it was queued for. */
type SignedAck = { device: BenchDevice; headers: Record<string, string>; body: Buffer }

function signedReport(device: SimulatedDevice, report: Record<string, unknown>): { headers: Record<string, string>; body: Buffer } {
  const body = buildCommandReport({ EnrollmentID: device.enrollmentId, ...report } as Parameters<typeof buildCommandReport>[0])
  return {
    body,
    headers: { 'content-type': COMMAND_CONTENT_TYPE, authorization: `Bearer ${device.token}`, 'mdm-signature': device.sign(body), 'user-agent': 'MDM/1.0' },
  }
}

async function enrollDevices(server: Server, count: number): Promise<{ devices: BenchDevice[]; perSecond: number; p50: number; p99: number }> {
  const transport = httpTransport()
  const sims = Array.from({ length: count }, (_, i) => new SimulatedDevice({ transport, model: 'iPhone', userIdentifier: `bench${i}-${randomBytes(3).toString('hex')}@bench.example` }))
  await Promise.all(sims.map((d) => d.prepare()))
  const times: number[] = []
  let next = 0
  const started = performance.now()
  const worker = async () => {
    while (next < sims.length) {
      const device = sims[next++]!
      const t = performance.now()
      await enrollmentSteps(device, { server: server.base, signIn: { kind: 'dev' } }, async (_step, body) => {
        await body()
      })
      times.push(performance.now() - t)
    }
  }
  await Promise.all(Array.from({ length: Math.min(ENROLL_CONCURRENCY, count) }, worker))
  const elapsed = performance.now() - started
  times.sort((a, b) => a - b)
  const devices = sims.map((sim) => ({ sim, path: new URL(sim.serverUrl!).pathname, idle: signedReport(sim, { Status: 'Idle' }) }))
  return { devices, perSecond: (count * 1000) / elapsed, p50: times[Math.floor(times.length / 2)]!, p99: times[Math.min(times.length - 1, Math.ceil(times.length * 0.99) - 1)]! }
}

/** Starts counting the server's and Postgres's CPU; the returned function gives each in ms per request. */
function cpuMeter(server: Server): (requests: number) => { cpu: number; dbCpu: number } {
  const serverCpu = () => server.pids().reduce((a, p) => a + cpuMsOf(p), 0)
  const before = serverCpu()
  const dbBefore = cpuOfCommand('postgres')
  const perRequest = (ms: number, requests: number) => Math.round((ms / Math.max(1, requests)) * 100) / 100
  return (requests) => ({ cpu: perRequest(serverCpu() - before, requests), dbCpu: perRequest(cpuSince('postgres', dbBefore), requests) })
}

async function cannon(name: string, server: Server, request: Requests): Promise<Row> {
  const base = server.base
  const cpuPerRequest = cpuMeter(server)
  const result = await autocannon({
    url: base,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        setupRequest: (req) => {
          const r = request()
          return { ...req, method: r.method as 'GET', path: r.path, headers: r.headers ?? {}, body: r.body as unknown as string }
        },
      },
    ],
  })
  return { run: name, rps: Math.round(result.requests.average), ...cpuPerRequest(result.requests.total), p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts + result.non2xx }
}

/** Idle from each device in turn. */
function idleRequests(devices: BenchDevice[]) {
  let i = 0
  return () => {
    const d = devices[i++ % devices.length]!
    return { method: 'PUT', path: d.path, headers: d.idle.headers, body: d.idle.body }
  }
}

function baselineRequests() {
  let i = 0
  return () => ({ method: 'GET', path: `/row/${i++ % 1000}` })
}

type Requests = () => { method: string; path: string; headers?: Record<string, string>; body?: Buffer }

/**
 * `rounds` alternating rounds of each run in turn. `best`: the best round of each (the least disturbed by
 * the rest of the machine); `rounds[r][i]`: run i in round r.
 */
async function alternate(runs: { label: string; server: Server; requests: () => Requests }[], rounds = ROUNDS): Promise<{ best: Row[]; rounds: Row[][] }> {
  // Warm up each (JIT, pools, caches).
  for (const r of runs) await cannonShort(r.server.base, r.requests())
  const best: Row[] = []
  const all: Row[][] = []
  for (let round = 0; round < rounds; round++) {
    const rows: Row[] = []
    for (const [i, r] of runs.entries()) {
      const row = await cannon(r.label, r.server, r.requests())
      rows.push(row)
      if (!best[i] || row.rps > best[i].rps) best[i] = row
    }
    all.push(rows)
  }
  return { best, rounds: all }
}

const BASELINE_LABEL = 'baseline: bare Fastify + one primary-key query'

/** Signed Idle from `devices` against the baseline, in alternating rounds. */
async function compare(label: string, server: Server, baseline: Server, devices: BenchDevice[]): Promise<{ ours: Row; base: Row }> {
  const {
    best: [base, ours],
  } = await alternate([
    { label: BASELINE_LABEL, server: baseline, requests: baselineRequests },
    { label, server, requests: () => idleRequests(devices) },
  ])
  ours!.rss = memoryText(server)
  return { ours: ours!, base: base! }
}

async function cannonShort(base: string, request: Requests) {
  await autocannon({ url: base, connections: CONNECTIONS, duration: 3, requests: [{ setupRequest: (req) => ({ ...req, ...request() }) as typeof req }] })
}

function memoryText(server: Server): string {
  const mems = server.pids().map(memoryOf).filter((m): m is Memory => m !== undefined)
  return mems.map((m) => `${m.peak}`).join(' + ')
}

/**
 * The command-delivery cycle: CONNECTIONS devices at once, each Idle -> command -> Acknowledged (signed
 * ahead of time for every command queued to it) -> next command ... until the queue is empty, then Idle
 * again. Counts commands acknowledged per second.
 */
async function commandCycle(server: Server, devices: BenchDevice[], acks: Map<string, SignedAck>): Promise<Row> {
  const url = new URL(server.base)
  // Every request prepared as bytes before the clock starts (bench/lib/raw-http.ts).
  const prepared = (device: BenchDevice, r: { headers: Record<string, string>; body: Buffer }) => requestBytes('PUT', device.path, url.host, r.headers, r.body)
  const idles = new Map(devices.map((d) => [d, prepared(d, d.idle)]))
  const ackBytes = new Map<string, Buffer>()
  for (const [uuid, r] of acks) ackBytes.set(uuid, prepared(r.device, r))
  const latencies: number[] = []
  const cpuPerRequest = cpuMeter(server)
  let acknowledged = 0
  let errors = 0
  const until = performance.now() + SECONDS * 1000
  const started = performance.now()
  const loop = async (device: BenchDevice) => {
    const idle = idles.get(device)!
    let connection = await RawConnection.open(url.hostname, Number(url.port))
    let report = idle
    while (performance.now() < until) {
      let res
      const t = performance.now()
      try {
        res = await connection.request(report)
      } catch {
        errors++
        connection.close()
        connection = await RawConnection.open(url.hostname, Number(url.port))
        report = idle
        continue
      }
      latencies.push(performance.now() - t)
      if (res.status !== 200) {
        errors++
        report = idle
        continue
      }
      if (report !== idle) acknowledged++
      const uuid = /<key>CommandUUID<\/key>\s*<string>([^<]+)<\/string>/.exec(res.body.toString('utf8'))?.[1]
      const ack = uuid ? ackBytes.get(uuid) : undefined
      if (uuid && !ack) errors++
      report = ack ?? idle
    }
    connection.close()
  }
  await Promise.all(devices.slice(0, CONNECTIONS).map(loop))
  const elapsed = performance.now() - started
  latencies.sort((a, b) => a - b)
  return {
    run: 'command cycle: Idle -> command -> Acknowledged -> next (commands/s)',
    rps: Math.round((acknowledged * 1000) / elapsed),
    ...cpuPerRequest(latencies.length),
    p50: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0),
    p99: Math.round(latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] ?? 0),
    errors,
    rss: memoryText(server),
  }
}

/** Queues COMMANDS_PER_DEVICE DeviceInformation commands per benchmark device by SQL; returns their Acknowledged reports. */
async function queueCommands(databaseUrl: string, devices: BenchDevice[]) {
  const acks = new Map<string, SignedAck>()
  await withClient(databaseUrl, async (c) => {
    for (const d of devices) {
      const uuids = Array.from({ length: COMMANDS_PER_DEVICE }, () => crypto.randomUUID().toUpperCase())
      await c.query(
        `INSERT INTO mdm_commands (command_uuid, mdm_enrollment_id, mdm_channel_id, request_type, command)
         SELECT u, ch.mdm_enrollment_id, ch.id, 'DeviceInformation', '{"RequestType": "DeviceInformation", "Queries": ["OSVersion", "ModelName"]}'::jsonb
         FROM mdm_channels ch JOIN mdm_enrollments e ON e.id = ch.mdm_enrollment_id, unnest($2::text[]) u
         WHERE e.enrollment_id = $1 AND e.status = 'active' AND ch.enrollment_user_id IS NULL`,
        [d.sim.enrollmentId, uuids],
      )
      for (const u of uuids) acks.set(u, { device: d, ...signedReport(d.sim, { Status: 'Acknowledged', CommandUUID: u, QueryResponses: { OSVersion: '18.1', ModelName: 'iPhone' } }) })
    }
  })
  return acks
}

/** Cancels the commands still open on the benchmark devices' channels. */
async function cancelOpenCommands(databaseUrl: string, devices: BenchDevice[]) {
  await withClient(databaseUrl, (c) =>
    c.query(
      `UPDATE mdm_commands m SET status = 'cancelled', cancelled_at = now()
       FROM mdm_enrollments e WHERE e.id = m.mdm_enrollment_id AND e.enrollment_id = ANY($1::text[]) AND m.status IN ('pending', 'sent', 'not_now')`,
      [devices.map((d) => d.sim.enrollmentId)],
    ),
  )
}

function table(): string {
  const lines = ['| run | requests/s | server CPU ms/request | Postgres CPU ms/request | p50 ms | p99 ms | errors | peak RSS MB |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  for (const r of rows) lines.push(`| ${r.run} | ${r.rps} | ${r.cpu ?? ''} | ${r.dbCpu ?? ''} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.rss ?? ''} |`)
  lines.push('', '| target | measured | required | |', '|---|---:|---:|---|')
  for (const t of targets) lines.push(`| ${t.name} | ${t.value} | ${t.target} | ${t.pass ? 'pass' : '**FAIL**'} |`)
  return lines.join('\n')
}

async function pgliteIdleMemory(): Promise<Memory | undefined> {
  const server = await startServer(undefined)
  try {
    await new Promise((r) => setTimeout(r, 5000))
    return memoryOf(server.child.pid!)
  } finally {
    await server.stop()
  }
}

async function main() {
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim()
  console.error(`building (npm run build) at ${commit}`)
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  const database = await createPostgresDatabase(ADMIN_URL, 'mdm_bench')
  let server = await startServer(database.url, { WORKERS: '1' })
  const baseline = await startBaseline(database.url)
  let large: { url: string; drop(): Promise<void> } | undefined
  try {
    console.error(`enrolling ${DEVICES} devices`)
    const enrolled = await enrollDevices(server, DEVICES)
    const devices = enrolled.devices
    rows.push({ run: `full enrollments (sign-in -> profile -> SCEP -> Authenticate -> TokenUpdate), ${ENROLL_CONCURRENCY} at a time`, rps: Math.round(enrolled.perSecond * 10) / 10, p50: Math.round(enrolled.p50), p99: Math.round(enrolled.p99), errors: 0, rss: memoryText(server) })

    let emptyIdle: Row | undefined
    let base: Row | undefined
    if (run('idle')) {
      console.error('Idle against the baseline')
      const compared = await compare(`signed Idle, empty queue, ${DEVICES} devices`, server, baseline, devices)
      base = compared.base
      rows.push(base, compared.ours)
      emptyIdle = compared.ours
      const ratio = emptyIdle.rps / base.rps
      targets.push({ name: 'signed Idle / bare route', value: `${ratio.toFixed(2)}x`, target: '>= 0.50x', pass: ratio >= 0.5 })
    }
    if (run('cycle')) {
      if (!base) {
        // BENCH_ONLY=cycle (profiling the cycle alone): the baseline still runs, once.
        await cannonShort(baseline.base, baselineRequests())
        base = await cannon(BASELINE_LABEL, baseline, baselineRequests())
        rows.push(base)
      }
      console.error('command cycle')
      const acks = await queueCommands(database.url, devices)
      const cycle = await commandCycle(server, devices, acks)
      rows.push(cycle)
      if (cycle.rps * SECONDS >= acks.size * 0.95) notes.push(`The command cycle nearly emptied its queue (${acks.size} commands): its figure is a lower bound; raise BENCH_COMMANDS_PER_DEVICE.`)
      // The Idle runs after this one are with an empty queue too: an Idle would otherwise get (and, as a new
      // session, get again) whatever the cycle did not reach, a write and a command plist per request.
      await cancelOpenCommands(database.url, devices)
      const c = cycle.rps / base.rps
      targets.push({ name: 'command cycle (commands/s) / bare route', value: `${c.toFixed(2)}x`, target: '>= 0.25x', pass: c >= 0.25 })
    }

    if (run('workers')) {
      console.error('WORKERS=2')
      await server.stop()
      server = await startServer(database.url, { WORKERS: '2' })
      const { ours, base } = await compare(`signed Idle, WORKERS=2`, server, baseline, devices)
      rows.push(ours)
      const one = emptyIdle?.rps ?? 0
      targets.push({ name: 'WORKERS=2 / WORKERS=1 (Idle)', value: `${(ours.rps / one).toFixed(2)}x`, target: 'reported', pass: true })
      notes.push(`WORKERS=2 shares ${availableParallelism()} cores with Postgres, the baseline and the load generator (baseline in that round: ${base.rps}/s).`)
      await server.stop()
      server = await startServer(database.url, { WORKERS: '1' })
    }

    if (run('large')) {
      // The same devices against two servers in alternating rounds: one on this database as it is, one on
      // a copy of it to which the synthetic rows are added (and which dataset.ts vacuums and analyzes).
      // Taken in turns, a slower machine in this part counts alike for both; compared with the Idle run
      // above, minutes before, the ratio moved between 0.85x and 0.98x from one run to the next. The
      // original is left as it is, never vacuumed or analyzed (autovacuum is off here), so that it is
      // planned with index lookups as the copy is: told by VACUUM or ANALYZE that its tables hold 64 rows,
      // Postgres plans the context lookup as sequential scans, which are slower (the .fails test in
      // test/storage/device-context.test.ts has it with its figures), and the large database would look
      // faster than it.
      console.error(`copying the database; generating ${ENROLLMENTS} enrollments and ${COMMANDS} commands in the copy`)
      // Nobody may be connected to a database being copied. The baseline is not needed after this part.
      await server.stop()
      await baseline.stop()
      large = await createPostgresDatabase(ADMIN_URL, 'mdm_bench_large', new URL(database.url).pathname.slice(1))
      const t = performance.now()
      await withClient(large.url, (c) => generateDataset(c, { enrollments: ENROLLMENTS, commands: COMMANDS }))
      notes.push(`The large database was generated in ${Math.round((performance.now() - t) / 1000)} s.`)
      server = await startServer(database.url, { WORKERS: '1' })
      const onLarge = await startServer(large.url, { WORKERS: '1' })
      try {
        const { best, rounds } = await alternate(
          [
            { label: `signed Idle, empty database (the copy's original), ${DEVICES} devices`, server, requests: () => idleRequests(devices) },
            { label: `signed Idle, ${ENROLLMENTS.toLocaleString('en')} enrollments and ${COMMANDS.toLocaleString('en')} commands in the database`, server: onLarge, requests: () => idleRequests(devices) },
          ],
          LARGE_ROUNDS,
        )
        const [empty, big] = best
        empty!.rss = memoryText(server)
        big!.rss = memoryText(onLarge)
        rows.push(empty!, big!)
        // Each round's large run against the empty run just before it; the median of those ratios.
        const ratio = median(rounds.map(([e, b]) => b!.rps / e!.rps))
        notes.push(`Large database / empty, each round: ${rounds.map(([e, b]) => `${(b!.rps / e!.rps).toFixed(2)}x`).join(', ')}.`)
        targets.push({ name: `Idle with the large database / empty (median of ${rounds.length} alternating rounds)`, value: `${ratio.toFixed(2)}x`, target: '>= 0.90x', pass: ratio >= 0.9 })
      } finally {
        await onLarge.stop()
      }
    }

    const peak = Math.max(...server.pids().map((p) => memoryOf(p)?.peak ?? 0), ...rows.flatMap((r) => (r.rss ?? '').split(' + ').map(Number).filter(Number.isFinite)))
    targets.push({ name: 'peak RSS of one server process under load (Postgres)', value: `${peak} MB`, target: '< 200 MB', pass: peak < 200 })
  } finally {
    await server.stop()
    await baseline.stop()
    await database.drop()
    await large?.drop()
  }
  if (run('pglite')) {
    console.error('embedded database: idle memory after the first start')
    const mem = await pgliteIdleMemory()
    if (mem) targets.push({ name: 'embedded (PGlite) server, idle after its first start', value: `${mem.rss} MB (peak ${mem.peak})`, target: '< 300 MB', pass: mem.rss < 300 })
  }

  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`
  const report = [
    `Commit ${commit}, ${new Date().toISOString().slice(0, 10)}; ${machine}.`,
    `${DEVICES} devices, ${CONNECTIONS} connections, ${SECONDS} s per run, best of ${ROUNDS} alternating rounds (the large database: ${LARGE_ROUNDS}); Postgres on the same machine.`,
    '',
    table(),
    '',
    ...notes.map((n) => `- ${n}`),
  ].join('\n')
  console.log(report)
  if (env.BENCH_WRITE === '1') writeSection('Check-in', `\`npm run bench:mdm\` (bench/mdm/run.ts). The latest run:\n\n${report}`)
}

await main()
