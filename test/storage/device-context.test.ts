/**
 * The one-query snapshot of check-in (storage/device-context.ts) holds exactly the rows the Prisma API
 * reads, with the same types (dates, bytes, JSON, arrays), on Postgres and on PGlite: the services decide
 * on it as they did on one query per row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { certificateFingerprint } from '../../src/pki/certificate.js'
import { hashSecret } from '../../src/pki/secrets.js'
import { CONTEXT_FIELDS, loadDeviceContext, STATEMENT } from '../../src/storage/device-context.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, enrollDevice, type Device } from '../helpers/device.js'

/** The fields the context holds, taken from a row the Prisma API read. */
function only<T extends object>(row: T, fields: readonly string[]): Partial<T> {
  return Object.fromEntries(fields.map((f) => [f, (row as Record<string, unknown>)[f]])) as Partial<T>
}

/** The nodes of the context statement's plan for four keys (named `name`: its own prepared statement on Postgres). */
async function planNodes(name: string): Promise<{ type: string; index?: string }[]> {
  const keys = [[iphone, iphone.user.token], [mac, mac.user.token], [mac, iphone.user.token], [iphone, null]] as const
  const values = [keys.map(([d]) => certificateFingerprint(d.certificate.raw)), keys.map(([, token]) => (token ? Buffer.from(hashSecret(token)).toString('hex') : null))]
  const [row] = await t.app.db.sql.query<Record<string, unknown>>({ name, text: `EXPLAIN (FORMAT JSON) ${STATEMENT.text}` }, values)
  const plan = row!['QUERY PLAN']
  const nodes: { type: string; index?: string }[] = []
  const walk = (node: { 'Node Type': string; 'Index Name'?: string; Plans?: unknown[] }) => {
    nodes.push({ type: node['Node Type'], index: node['Index Name'] })
    for (const child of node.Plans ?? []) walk(child as typeof node)
  }
  walk((typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan)
  return nodes
}

/** Scans that read a whole table rather than an index (a Function Scan reads the keys, a Subquery Scan its subquery). */
const notIndexScans = (nodes: { type: string }[]) => nodes.filter((n) => n.type.endsWith('Scan') && !['Index Scan', 'Index Only Scan', 'Function Scan', 'Subquery Scan'].includes(n.type))
const hashesOrMerges = (nodes: { type: string }[]) => nodes.filter((n) => /Hash|Merge/.test(n.type))

let t: TestApp
let iphone: Device
let mac: Device
beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
  iphone = await activeDevice(t.app)
  mac = await activeDevice(t.app, { mac: true })
  // A Mac's user channel: a second channel row.
  await mac.sim.tokenUpdate('user')
}, 120_000)
afterAll(async () => t?.close())

describe('loadDeviceContext', () => {
  it('returns the certificate, its enrollment, every channel and the tokens as the Prisma API reads them', async () => {
    const prisma = t.app.db.prisma
    for (const device of [iphone, mac]) {
      const fingerprint = certificateFingerprint(device.certificate.raw)
      const context = (await loadDeviceContext(t.app.db.sql, fingerprint, hashSecret(device.user.token)))!
      const certificate = await prisma.deviceCertificate.findUniqueOrThrow({ where: { fingerprintSha256: fingerprint } })
      // Only the columns the decisions read (CONTEXT_FIELDS), with the Prisma API's values and types.
      expect(context.certificate).toEqual(only(certificate, CONTEXT_FIELDS.certificate))
      const binding = await prisma.mdmEnrollmentCertificate.findUniqueOrThrow({ where: { deviceCertificateId: certificate.id }, include: { enrollment: true } })
      expect(context.enrollment).toEqual(only(binding.enrollment, CONTEXT_FIELDS.enrollment))
      const channels = await prisma.mdmChannel.findMany({ where: { mdmEnrollmentId: binding.enrollment.id } })
      expect(context.channels).toHaveLength(channels.length)
      expect(new Set(context.channels)).toEqual(new Set(channels.map((row) => ({ ...only(row, CONTEXT_FIELDS.channel), openCommands: false }))))
      // The device channel first.
      expect(context.channels[0]!.enrollmentUserId).toBeNull()
      const token = await prisma.accessToken.findUniqueOrThrow({ where: { tokenHash: hashSecret(device.user.token) }, include: { user: true } })
      expect(context.presented).toEqual({ token: only(token, CONTEXT_FIELDS.token), userActive: token.user.active, grantCreatedAt: null })
      const current = await prisma.accessToken.findUniqueOrThrow({ where: { id: binding.enrollment.currentAccessTokenId! } })
      expect(context.current).toEqual({ token: only(current, CONTEXT_FIELDS.token), userActive: true })
      expect(context.userActive).toBe(true)
    }
    expect(mac.sim.enrollmentUserId).toBeDefined()
  })

  it('answers null for an unknown fingerprint, no presented token without a hash or for an unknown one, and follows a deactivated user', async () => {
    const prisma = t.app.db.prisma
    expect(await loadDeviceContext(t.app.db.sql, 'f'.repeat(64), null)).toBeNull()
    const fingerprint = certificateFingerprint(iphone.certificate.raw)
    expect((await loadDeviceContext(t.app.db.sql, fingerprint, null))!.presented).toBeNull()
    expect((await loadDeviceContext(t.app.db.sql, fingerprint, hashSecret('not a token')))!.presented).toBeNull()
    await prisma.user.update({ where: { id: iphone.user.userId }, data: { active: false } })
    try {
      const context = (await loadDeviceContext(t.app.db.sql, fingerprint, hashSecret(iphone.user.token)))!
      expect(context.presented!.userActive).toBe(false)
      expect(context.current!.userActive).toBe(false)
      expect(context.userActive).toBe(false)
    } finally {
      await prisma.user.update({ where: { id: iphone.user.userId }, data: { active: true } })
    }
  })

  it('reads each token and user from its own row whichever the statement looked up once for two roles (presented, current, enrollment user)', async () => {
    // One device whose enrollment user, current token and presented tokens vary; every expectation is
    // read with the Prisma API, row by row. The other user is inactive, so that a state taken from the
    // wrong user shows.
    const prisma = t.app.db.prisma
    const device = await activeDevice(t.app)
    const other = await activeDevice(t.app)
    const fingerprint = certificateFingerprint(device.certificate.raw)
    const certificate = await prisma.deviceCertificate.findUniqueOrThrow({ where: { fingerprintSha256: fingerprint } })
    const { enrollment } = await prisma.mdmEnrollmentCertificate.findUniqueOrThrow({ where: { deviceCertificateId: certificate.id }, include: { enrollment: true } })
    const ownToken = await prisma.accessToken.findUniqueOrThrow({ where: { tokenHash: hashSecret(device.user.token) } })
    // A second token of the same user that is not the enrollment's current one (a new sign-in).
    const secondSecret = 'a second sign-in of the same user, not yet presented'
    await prisma.accessToken.create({ data: { tokenHash: hashSecret(secondSecret), userId: ownToken.userId, teamId: ownToken.teamId, method: 'dev', enrollUntil: new Date(Date.now() + 3_600_000) } })
    await prisma.user.update({ where: { id: other.user.userId }, data: { active: false } })
    const expected = async (secret: string | null) => {
      const e = await prisma.mdmEnrollment.findUniqueOrThrow({ where: { id: enrollment.id } })
      const user = await prisma.user.findUniqueOrThrow({ where: { id: e.userId } })
      const presented = secret ? await prisma.accessToken.findUnique({ where: { tokenHash: hashSecret(secret) }, include: { user: true } }) : null
      const current = e.currentAccessTokenId ? await prisma.accessToken.findUniqueOrThrow({ where: { id: e.currentAccessTokenId }, include: { user: true } }) : null
      return {
        presented: presented ? { token: only(presented, CONTEXT_FIELDS.token), userActive: presented.user.active, grantCreatedAt: null } : null,
        current: current ? { token: only(current, CONTEXT_FIELDS.token), userActive: current.user.active } : null,
        userActive: user.active,
      }
    }
    const secrets = [device.user.token, secondSecret, other.user.token, 'unknown token', null]
    try {
      // The enrollment's current token: its own user's; then (as no server would set it) another user's.
      for (const currentAccessTokenId of [ownToken.id, other.user.tokenId]) {
        await prisma.mdmEnrollment.update({ where: { id: enrollment.id }, data: { currentAccessTokenId } })
        for (const secret of secrets) {
          const context = (await loadDeviceContext(t.app.db.sql, fingerprint, secret ? hashSecret(secret) : null))!
          expect({ presented: context.presented, current: context.current, userActive: context.userActive }, `current ${currentAccessTokenId}, presented ${secret}`).toEqual(await expected(secret))
        }
      }
      // Not vacuous: the inactive user shows where its rows are read.
      expect((await expected(other.user.token)).presented!.userActive).toBe(false)
      expect((await expected(null)).current!.userActive).toBe(false)
      expect((await expected(null)).userActive).toBe(true)
    } finally {
      await prisma.mdmEnrollment.update({ where: { id: enrollment.id }, data: { currentAccessTokenId: enrollment.currentAccessTokenId } })
      await prisma.user.update({ where: { id: other.user.userId }, data: { active: true } })
    }
  })

  it('answers each of many concurrent lookups with its own context when they share a statement (storage/batch.ts)', async () => {
    const fresh = await enrollDevice(t.app)
    // Each certificate with its own token, with another device's token, with none, and unknown ones:
    // one runs at once, the others wait and go to the database together.
    const keys: [string, Uint8Array | null][] = []
    for (let round = 0; round < 4; round++) {
      for (const device of [iphone, mac, fresh]) {
        const fingerprint = certificateFingerprint(device.certificate.raw)
        keys.push([fingerprint, hashSecret(device.user.token)], [fingerprint, hashSecret(iphone.user.token)], [fingerprint, null])
      }
      keys.push([`${round}`.repeat(64), hashSecret(mac.user.token)])
    }
    const alone: unknown[] = []
    for (const [fingerprint, hash] of keys) alone.push(await loadDeviceContext(t.app.db.sql, fingerprint, hash))
    const together = await Promise.all(keys.map(([fingerprint, hash]) => loadDeviceContext(t.app.db.sql, fingerprint, hash)))
    expect(together).toEqual(alone)
    // The lookups alone differ from each other where their keys do (the comparison above is not vacuous).
    expect(alone.filter((c) => c === null)).toHaveLength(4)
    expect(new Set(alone.map((c) => (c as { certificate?: { id: string } } | null)?.certificate?.id)).size).toBe(4)
    expect((alone[1] as { presented: { token: { id: string } } }).presented.token.id).toBe(iphone.user.tokenId)
    expect((alone[3] as { presented: { token: { id: string } } }).presented.token.id).toBe(mac.user.tokenId)
  })

  it('is planned as index lookups, one per table and key, never a scan or a hash of a whole table', async () => {
    // On this test's small tables, where a planner left to itself hashes them (the first form of the
    // statement's deduplicated lookups did: a hash of every user and token, built for each key). On
    // Postgres a named statement takes the connection's generic plan, as the server's does.
    const nodes = await planNodes('explain_device_contexts')
    expect(notIndexScans(nodes)).toEqual([])
    expect(hashesOrMerges(nodes)).toEqual([])
    expect(nodes.filter((n) => n.type.startsWith('Index')).length).toBeGreaterThanOrEqual(10)
  })

  it('reads each row by a hash index, one page whatever the table size, and the queue by its own index', async () => {
    // A B-tree lookup of a random key (a fingerprint, a UUID) reads one more page per level: three index
    // pages on 100,000 enrollments against one on a small database, and Idle there was 0.86x of a small
    // database's, 0.92x with the hash indexes (issue 15; migration 20261201000000_check_in_hash_indexes).
    // Postgres chooses them by its own costs; this says it does on a small database without statistics.
    const scans = (await planNodes('explain_device_contexts_indexes')).filter((n) => n.index)
    const queue = scans.filter((n) => n.index === 'mdm_commands_queue_idx')
    expect(queue).toHaveLength(1)
    expect(scans.filter((n) => !queue.includes(n)).map((n) => n.index)).toEqual([
      'device_certificates_fingerprint_sha256_hash_idx',
      'mdm_enrollment_certificates_device_certificate_id_hash_idx',
      'mdm_enrollments_id_hash_idx',
      'mdm_channels_mdm_enrollment_id_hash_idx',
      'access_tokens_token_hash_hash_idx',
      'users_id_hash_idx',
      'oauth2_grants_id_hash_idx',
      'access_tokens_id_hash_idx',
      'users_id_hash_idx',
      'users_id_hash_idx',
    ])
  })

  it('runs on connections that plan named statements once (a custom plan per execution cost more than the lookup)', async () => {
    // Prisma shares the pool (Postgres); PGlite runs every statement unnamed and keeps the default.
    const [{ mode }] = await t.app.db.prisma.$queryRaw<[{ mode: string }]>`SELECT current_setting('plan_cache_mode') AS mode`
    expect(mode).toBe(t.app.db.kind === 'postgres' ? 'force_generic_plan' : 'auto')
  })

  it('holds a certificate with no enrollment yet (before Authenticate)', async () => {
    const fresh = await enrollDevice(t.app)
    const context = (await loadDeviceContext(t.app.db.sql, certificateFingerprint(fresh.certificate.raw), hashSecret(fresh.user.token)))!
    expect(context.enrollment).toBeNull()
    expect(context.channels).toEqual([])
    expect(context.current).toBeNull()
    expect(context.userActive).toBeNull()
    expect(context.presented?.token.id).toBe(fresh.user.tokenId)
  })

  it('says whether each channel has an open command, so that an Idle with an empty queue asks for none', async () => {
    const device = await activeDevice(t.app)
    const fingerprint = certificateFingerprint(device.certificate.raw)
    const open = async () => (await loadDeviceContext(t.app.db.sql, fingerprint, null))!.channels[0]!.openCommands
    expect(await open()).toBe(false)
    const enrollment = (await loadDeviceContext(t.app.db.sql, fingerprint, null))!.enrollment!.id
    expect((await admin(t.app, 'POST', `/enrollments/${enrollment}/commands`, { RequestType: 'ProfileList' })).statusCode).toBe(201)
    expect(await open()).toBe(true)
    // Sent and not answered yet: still open (the next session sends it again).
    const sent = await device.idle()
    expect(sent.body).toContain('ProfileList')
    expect(await open()).toBe(true)
    const uuid = /<key>CommandUUID<\/key>\s*<string>([^<]+)<\/string>/.exec(sent.body)![1]!
    expect((await device.idle(undefined, { Status: 'Acknowledged', CommandUUID: uuid })).statusCode).toBe(200)
    expect(await open()).toBe(false)
  })

  // Fails: once autovacuum has analyzed a small database (tables of a few dozen rows, a few pages each),
  // Postgres prefers sequential scans and hashes of those tables to the index lookups, for each key.
  // Measured with pgbench on the benchmark's synthetic rows cut to 64 devices and analyzed, 16 keys per
  // statement: ~850 statements a second against ~2,200 with index lookups before the hash indexes, ~2,000
  // (a plan now mixed) against ~4,500 with them. It stays bounded: a table of more than a few pages is
  // read through its index by Postgres's own estimate (the 100,000-enrollment database is), and a small
  // database has few devices to serve. Tried without success: each table as its own LATERAL ... OFFSET 0
  // subquery (sequential scans per key instead of hashes), and random_page_cost=1.1 on the connections
  // (index lookups except the one-page mdm_enrollment_certificates, hashed). Tried, measured, not kept:
  // the statement as a PL/pgSQL function with SET enable_seqscan, enable_hashjoin and enable_mergejoin
  // off (its own plan settings). It gets the index plan (the ~4,500 above), but the call costs more than
  // it saves where the plan was already right: bench:mdm, two servers on one database in 7 alternating
  // rounds, Idle with the function / without 0.93x unanalyzed and only 1.05x analyzed; pgbench, one key
  // per statement on 100,000 enrollments: the wrapper alone -5%, its SET clauses another -4%. What would
  // fix it without that cost: a planner hint (not in core Postgres).
  // Last in the file, as the ANALYZE changes the plans of the statements after it.
  it.fails('is planned as index lookups also once the tables are analyzed (a small database after autovacuum)', async () => {
    await t.app.db.prisma.$executeRawUnsafe(
      'ANALYZE device_certificates, mdm_enrollment_certificates, mdm_enrollments, mdm_channels, access_tokens, users, oauth2_grants, mdm_commands',
    )
    const nodes = await planNodes('explain_device_contexts_analyzed')
    expect(notIndexScans(nodes)).toEqual([])
    expect(hashesOrMerges(nodes)).toEqual([])
  })
})
