/**
 * PKIOperation throughput: our SCEP endpoint against micromdm's Go scepserver (Debian package `scep`) on
 * the same machine, each in its own process, fed the same kind of requests: a PKCSReq with its own CSR,
 * signed by a self-signed RSA-2048 certificate with SHA-256, enveloped to that server's CA. Our server
 * gets one-time challenges minted in advance through our services, so every request must succeed (and
 * its database must then hold one certificate per request, or the run is void); the Go server checks one
 * static challenge. Requests are built before the clock starts and replayed by autocannon. Each round
 * starts both servers afresh and warms them up; the order alternates between rounds.
 *
 * scepserver's file depot races on its serial file under concurrent requests and answers some of them
 * with a CertRep FAILURE, so the table shows both responses/s and certificates/s (SUCCESS per second).
 *
 *   npm run bench:scep
 *   BENCH_REQUESTS=3000 BENCH_CONNECTIONS=16 BENCH_ROUNDS=5 BENCH_CIPHER=des-cbc npm run bench:scep
 *   BENCH_SERVERS=ours BENCH_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run bench:scep
 *
 * BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) must allow CREATE DATABASE;
 * each round uses a throwaway database and drops it.
 */
import { X509Certificate, generateKeyPairSync } from 'node:crypto'
import { cpus, loadavg } from 'node:os'
import autocannon from 'autocannon'
import type { CipherName } from '../../src/pki/scep/ciphers.js'
import { buildCsr, buildPkiMessage, nameDer, selfSignedCertificate } from '../../src/pki/scep/client.js'
import { MessageType } from '../../src/pki/scep/types.js'
import { createScepChallenge } from '../../src/services/challenges.js'
import { ensureDefaultTeam } from '../../src/storage/teams.js'
import { mintAccessToken, upsertUser } from '../../src/services/tokens.js'
import { openDatabase } from '../../src/storage/database.js'
import { GO, OURS, startGo, startOurs, type OurServer, type RunningServer } from './servers.js'
import { median } from '../lib/stats.js'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const WARMUP = Number(process.env.BENCH_WARMUP ?? 200)
const CIPHER = (process.env.BENCH_CIPHER ?? 'aes-128-cbc') as CipherName
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const SERVERS = (process.env.BENCH_SERVERS ?? 'ours,go').split(',')
const GO_CHALLENGE = 'bench-static-challenge'

/** One device key for every request (generating thousands of RSA keys would dominate the setup). */
const device = generateKeyPairSync('rsa', { modulusLength: 2048 })
const signer = { certificate: selfSignedCertificate(device), privateKey: device.privateKey }
let serialCn = 0

async function caCertificate(url: string): Promise<X509Certificate> {
  const res = await fetch(`${url}?operation=GetCACert`)
  if (!res.ok) throw new Error(`GetCACert: ${res.status}`)
  return new X509Certificate(Buffer.from(await res.arrayBuffer()))
}

/** `challenges.length` ready-made PKIOperation bodies, each with its own CSR (and CN: the Go depot wants unique CNs). */
function prepare(ca: X509Certificate, challenges: string[]): Buffer[] {
  return challenges.map((challenge) => {
    const csr = buildCsr({ keys: device, subject: nameDer([['CN', `bench-device-${serialCn++}`]]), challengePassword: challenge })
    return buildPkiMessage({ messageType: MessageType.PKCSReq, content: csr, signer, recipient: ca, cipher: CIPHER }).der
  })
}

/** One-time challenges through our own services, in the server's database. */
async function mintChallenges(server: OurServer, count: number): Promise<string[]> {
  const db = await openDatabase({ kind: 'postgres', url: server.databaseUrl, poolMax: 8, statementTimeoutMs: 30_000, connectTimeoutMs: 5_000 })
  try {
    const team = await ensureDefaultTeam(db.prisma)
    const user = await upsertUser(db.prisma, { issuer: 'bench', subject: `bench-${Date.now()}` })
    const token = await mintAccessToken(db.prisma, { userId: user.id, teamId: team.id, method: 'dev', windowSeconds: 86400 })
    const out: string[] = []
    const expiresAt = new Date(Date.now() + 3600_000)
    for (let i = 0; i < count; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, count - i) }, () => createScepChallenge(db.prisma, { accessTokenId: token.record.id, userId: user.id, teamId: team.id, expiresAt })),
      )
      out.push(...batch.map((b) => b.challenge))
    }
    return out
  } finally {
    await db.close()
  }
}

interface Measurement {
  server: string
  requests: number
  /** CertRep SUCCESS responses (the rest were FAILURE). */
  issued: number
  seconds: number
  /** Certificates issued per second. */
  rate: number
  p50: number
  p99: number
}

/**
 * autocannon hands bodies over as UTF-8 text, which mangles DER; the ASCII tail of the pkiStatus
 * attribute survives: OID ...01 09 03, SET { PrintableString "0" } = 01 09 03 31 03 13 01 30.
 */
const SUCCESS_STATUS = '\x01\x09\x03\x31\x03\x13\x01\x30'
const isSuccess = (body: string | Buffer | undefined) => String(body ?? '').includes(SUCCESS_STATUS)

/**
 * Replays `bodies` once each. `mustAllSucceed`: every response must be a SUCCESS and the server's
 * storage must hold one new certificate per request, or the run is void.
 */
async function load(server: RunningServer, bodies: Buffer[], mustAllSucceed: boolean): Promise<Measurement> {
  let next = 0
  const before = await server.issued()
  const started = performance.now()
  // autocannon finishes on its own one-second tick; time the run up to the last response instead.
  let lastResponse = started
  const result = await autocannon({
    url: `${server.url}?operation=PKIOperation`,
    method: 'POST',
    connections: CONNECTIONS,
    amount: bodies.length,
    headers: { 'content-type': 'application/x-pki-message' },
    requests: [
      {
        setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }),
        onResponse: () => {
          lastResponse = performance.now()
        },
      },
    ],
    verifyBody: isSuccess,
  })
  const seconds = (lastResponse - started) / 1000
  const stored = (await server.issued()) - before
  const issued = result['2xx'] - result.mismatches
  const broken = result.non2xx || result.errors || result.timeouts || result.requests.total !== bodies.length
  if (broken || (mustAllSucceed && (issued !== bodies.length || stored !== bodies.length))) {
    throw new Error(
      `${server.name}: ${bodies.length} requests, ${result.requests.total} answered, ${issued} SUCCESS, ${stored} stored, ` +
        `${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts: run is void`,
    )
  }
  return {
    server: server.name,
    requests: result.requests.total,
    issued,
    seconds,
    rate: issued / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
  }
}

async function measureOurs(server: OurServer, ca: X509Certificate, count: number) {
  return load(server, prepare(ca, await mintChallenges(server, count)), true)
}

/** scepserver's file depot races on its serial file under concurrent requests and answers some with FAILURE. */
async function measureGo(server: RunningServer, ca: X509Certificate, count: number) {
  return load(server, prepare(ca, Array.from({ length: count }, () => GO_CHALLENGE)), false)
}

function table(rows: Measurement[]): string {
  const head = ['server', 'requests', 'SUCCESS', 'seconds', 'resp/s', 'certs/s', 'p50 ms', 'p99 ms']
  const body = rows.map((r) => [r.server, String(r.requests), String(r.issued), r.seconds.toFixed(2), (r.requests / r.seconds).toFixed(1), r.rate.toFixed(1), String(r.p50), String(r.p99)])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}

async function main() {
  console.log(`SCEP PKIOperation: ${REQUESTS} requests x ${ROUNDS} rounds, ${CONNECTIONS} connections, ${CIPHER}, RSA-2048 CA and device keys`)
  console.log(`machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  const rows: Measurement[] = []
  for (let r = 0; r < ROUNDS; r++) {
    // Fresh servers each round: scepserver's file depot slows down as it fills (it scans index.txt).
    // Alternate who goes first, so neither always runs on a warmer or cooler machine.
    const order = (r % 2 === 0 ? ['ours', 'go'] : ['go', 'ours']).filter((s) => SERVERS.includes(s))
    for (const which of order) rows.push(which === 'ours' ? await round(() => startOurs(ADMIN_URL), measureOurs) : await round(() => startGo(GO_CHALLENGE), measureGo))
  }
  console.log(table(rows))
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  if (SERVERS.length > 1) {
    const of = (server: string, pick: (m: Measurement) => number) => median(rows.filter((r) => r.server === server).map(pick))
    const certs = [of(OURS, (r) => r.rate), of(GO, (r) => r.rate)]
    const reqs = [of(OURS, (r) => r.requests / r.seconds), of(GO, (r) => r.requests / r.seconds)]
    console.log(`\nmedian certificates/s: ours ${certs[0]!.toFixed(1)}, Go ${certs[1]!.toFixed(1)}, ratio ours/Go ${(certs[0]! / certs[1]!).toFixed(2)}`)
    console.log(`median responses/s:    ours ${reqs[0]!.toFixed(1)}, Go ${reqs[1]!.toFixed(1)}, ratio ours/Go ${(reqs[0]! / reqs[1]!).toFixed(2)} (counting Go's FAILURE answers)`)
  }
}

/** One round for one server: start it afresh, warm it up, measure, stop it. */
async function round<S extends RunningServer>(start: () => Promise<S>, measure: (server: S, ca: X509Certificate, count: number) => Promise<Measurement>) {
  const server = await start()
  try {
    const ca = await caCertificate(server.url)
    await measure(server, ca, WARMUP)
    return await measure(server, ca, REQUESTS)
  } finally {
    await server.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
