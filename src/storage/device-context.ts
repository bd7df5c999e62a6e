/**
 * Everything a check-in or command report needs to decide, in one round trip (issue 15): the identity
 * certificate by fingerprint, the enrollment it is bound to with its channels, the bearer token the
 * request presented (with its user's state and its sign-in time), and the enrollment's current token and
 * user for requests that carry none. The services apply their rules to this snapshot instead of asking
 * the database one question at a time; every write still happens under its own rules (storage/enrollments).
 */
import type { AccessToken as TokenRow, DeviceCertificate, MdmChannel, MdmEnrollment } from '../generated/prisma/client.js'
import { batchedPerDatabase } from './batch.js'
import type { Sql } from './database.js'

/** The bearer token a request presented, with what the bearer rules read about it. */
export interface PresentedToken {
  token: ContextToken
  userActive: boolean
  /** Its OAuth 2 grant's creation (the interactive sign-in behind a refreshed token), when it has one. */
  grantCreatedAt: Date | null
}

export interface DeviceContext {
  certificate: ContextCertificate
  /** The enrollment the certificate itself is bound to; a renewed certificate's first use binds it (enrollments.ts). */
  enrollment: ContextEnrollment | null
  channels: ContextChannel[]
  /** By the hash of the presented token; null when none was presented or it is unknown. */
  presented: PresentedToken | null
  /** The enrollment's current token (revoked or not) and whether its user is active. */
  current: { token: ContextToken; userActive: boolean } | null
  /** Whether the enrollment's user is active (null without an enrollment). */
  userActive: boolean | null
}

/**
 * The fields each part of the context holds: only what the decisions read. Every field costs on every
 * request (a profile of the Idle path found that decoding the whole rows, ~75 columns, was the largest
 * part of it). Timestamps come as milliseconds since the epoch: a number, where a date string would need
 * parsing.
 */
export const CONTEXT_FIELDS = {
  certificate: ['id', 'fingerprintSha256', 'enrollmentProfileId', 'accessTokenId', 'userId', 'teamId', 'revokedAt', 'notAfter', 'notBefore', 'renewedFromId'],
  enrollment: ['id', 'enrollmentId', 'userId', 'teamId', 'topic', 'authenticatedAt', 'status', 'enrollmentType', 'currentAccessTokenId', 'signedInAt', 'lastSeenAt'],
  channel: ['id', 'channelId', 'enrollmentUserId', 'pushToken', 'lastSeenAt'],
  token: ['id', 'userId', 'teamId', 'revokedAt', 'expiresAt', 'oauth2GrantId', 'createdAt'],
} as const satisfies Record<string, readonly string[]>

/** A full row is one of these too. */
export type ContextCertificate = Pick<DeviceCertificate, (typeof CONTEXT_FIELDS.certificate)[number]>
export type ContextEnrollment = Pick<MdmEnrollment, (typeof CONTEXT_FIELDS.enrollment)[number]>
export type ContextChannel = Pick<MdmChannel, (typeof CONTEXT_FIELDS.channel)[number]> & {
  /** Whether a command was still open on the channel (pending, sent or not now) when the request was read. */
  openCommands?: boolean
}
export type ContextToken = Pick<TokenRow, (typeof CONTEXT_FIELDS.token)[number]>

const DATES = new Set(['revokedAt', 'notAfter', 'notBefore', 'authenticatedAt', 'signedInAt', 'lastSeenAt', 'expiresAt', 'createdAt'])
const snake = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/** One part of the row: its columns in order, from `first`. */
interface Part {
  fields: readonly string[]
  first: number
}

/** A timestamp column as epoch milliseconds (converted back by `ms`). */
const epochMs = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`

const selected: string[] = []
function part(alias: string, fields: readonly string[]): Part {
  const first = selected.length
  for (const f of fields) selected.push(DATES.has(f) ? epochMs(`${alias}.${snake(f)}`) : `${alias}.${snake(f)}`)
  return { fields, first }
}
const C = part('c', CONTEXT_FIELDS.certificate)
const E = part('e', CONTEXT_FIELDS.enrollment)
const CH = part('ch', CONTEXT_FIELDS.channel)
const T = part('t', CONTEXT_FIELDS.token)
const CT = part('ct', CONTEXT_FIELDS.token)
const column = (sql: string) => selected.push(sql) - 1
const PRESENTED_USER_ACTIVE = column('tu.active')
const GRANT_CREATED = column(epochMs('g.created_at'))
const CURRENT_USER_ACTIVE = column('cu.active')
const ENROLLMENT_USER_ACTIVE = column('eu.active')
// Whether the channel has a command that is still open; without one a report is answered without asking
// for the next command (an Idle with an empty queue is one round trip). Open: neither completed nor
// cancelled, the queue index's condition (a constraint ties it to the status). A command queued after this
// read is pushed, and the device's next check-in gets it.
const OPEN_COMMANDS = column('q.open IS NOT NULL')

/** Epoch milliseconds as a Date, null as null. */
const ms = (value: unknown) => (value === null ? null : new Date(value as number))

function pick<T>(row: unknown[], part: Part): T | null {
  if (row[part.first] === null) return null
  const out: Record<string, unknown> = {}
  for (let i = 0; i < part.fields.length; i++) {
    const field = part.fields[i]!
    const value = row[part.first + i]
    out[field] = DATES.has(field) ? ms(value) : value
  }
  return out as T
}

/**
 * The context of each (fingerprint, token hash) pair: for each, one row per channel of the bound
 * enrollment (at least one row), or none when no certificate has this fingerprint. Many requests share
 * one statement when the server is busy (storage/batch.ts): the pairs come as two arrays and each row
 * names its pair by position. Each pair is looked up by its own LATERAL subquery (`OFFSET 0` keeps the
 * planner from merging it into the outer query): one index lookup per table per pair, as the statement
 * for one pair was. Each is by a hash index (migration 20261201000000_check_in_hash_indexes): one bucket
 * page and the row's page whatever the table's size, where a B-tree read three index pages on 100,000
 * enrollments and one on a small database. Not on a small database that has statistics (tables of a few
 * pages, analyzed): there Postgres scans and hashes the tables for each pair, slower but bounded by their
 * size (the `.fails` test in test/storage/device-context.test.ts says what was tried).
 *
 * A row already joined is not looked up again: the enrollment's current token is usually the presented
 * one, and the users behind them the same user (`contextOf` takes them from the row that was read). The
 * key is `nullif(...)`, and an index scan for NULL reads nothing. On a large database (100,000 enrollments)
 * the index descents were most of the statement's cost, and these were 3 of its 10. Those three are
 * LATERAL ... OFFSET 0 as well: joined on an expression, Postgres hashed the whole users and tokens tables
 * for each key on a small database (tested: the plan has index scans only).
 *
 * The open-command probe is a LATERAL ... LIMIT 1, not EXISTS: Postgres may plan an EXISTS as one hash of
 * every open command in the table, built on each execution (the benchmark's command cycle caught that
 * plan on a database without statistics: ~7,000 rows read per request and 3 ms of Postgres CPU); the
 * LATERAL form is one index probe per channel whatever the statistics say. It reads the channel's queue
 * from its newest command down: a command's earlier versions stay in the queue index until a VACUUM, all
 * below the commands still open, and a channel working through a long queue would otherwise step over
 * every one of them on each request (the command cycle read ~600 rows per request that way).
 */
export const STATEMENT = {
  name: 'mdm_device_contexts',
  rowMode: 'array',
  // One JSON array per row instead of ~45 columns: pg describes and decodes every column of every row on
  // each execution, and one text column parsed by JSON.parse costs about a quarter less Node CPU per query.
  text: `SELECT k.i, x.row
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(fingerprint, token_hash, i)
CROSS JOIN LATERAL (
  SELECT json_build_array(${selected.join(', ')})::text AS row, ch.enrollment_user_id AS user_channel
  FROM device_certificates c
  LEFT JOIN mdm_enrollment_certificates mec ON mec.device_certificate_id = c.id
  LEFT JOIN mdm_enrollments e ON e.id = mec.mdm_enrollment_id
  LEFT JOIN mdm_channels ch ON ch.mdm_enrollment_id = e.id
  LEFT JOIN access_tokens t ON t.token_hash = decode(k.token_hash, 'hex')
  LEFT JOIN users tu ON tu.id = t.user_id
  LEFT JOIN oauth2_grants g ON g.id = t.oauth2_grant_id
  LEFT JOIN LATERAL (SELECT * FROM access_tokens WHERE id = nullif(e.current_access_token_id, t.id) OFFSET 0) ct ON true
  LEFT JOIN LATERAL (SELECT active FROM users WHERE id = nullif(ct.user_id, t.user_id) OFFSET 0) cu ON true
  LEFT JOIN LATERAL (SELECT active FROM users WHERE id = nullif(nullif(e.user_id, t.user_id), ct.user_id) OFFSET 0) eu ON true
  LEFT JOIN LATERAL (SELECT true AS open FROM mdm_commands WHERE mdm_channel_id = ch.id AND completed_at IS NULL AND cancelled_at IS NULL ORDER BY seq DESC LIMIT 1) q ON true
  WHERE c.fingerprint_sha256 = k.fingerprint
  OFFSET 0
) x
ORDER BY k.i, x.user_channel NULLS FIRST`,
} as const

interface ContextKey {
  fingerprint: string
  tokenHash: Uint8Array | null
}

const loadBatched = batchedPerDatabase(loadDeviceContexts)

/** The context of a request signed by the certificate with `fingerprint`; `tokenHash` null: no token was presented. */
export function loadDeviceContext(sql: Sql, fingerprint: string, tokenHash: Uint8Array | null): Promise<DeviceContext | null> {
  return loadBatched(sql, { fingerprint, tokenHash })
}

async function loadDeviceContexts(sql: Sql, keys: ContextKey[]): Promise<(DeviceContext | null)[]> {
  const fingerprints = keys.map((k) => k.fingerprint)
  const tokenHashes = keys.map((k) => (k.tokenHash ? Buffer.from(k.tokenHash).toString('hex') : null))
  const byKey: unknown[][][] = keys.map(() => [])
  for (const [i, row] of await sql.query<[number | string, string]>(STATEMENT, [fingerprints, tokenHashes])) byKey[Number(i) - 1]!.push(JSON.parse(row) as unknown[])
  return byKey.map(contextOf)
}

function contextOf(rows: unknown[][]): DeviceContext | null {
  const first = rows[0]
  if (!first) return null
  const token = pick<ContextToken>(first, T)
  const enrollment = pick<ContextEnrollment>(first, E)
  // What the statement did not look up twice (its nullif conditions): the current token when it is the
  // presented one, a user when it is the presented token's or the current token's.
  const currentToken = token && enrollment?.currentAccessTokenId === token.id ? token : pick<ContextToken>(first, CT)
  const presentedUserActive = first[PRESENTED_USER_ACTIVE] as boolean
  const currentUserActive = currentToken && currentToken.userId === token?.userId ? presentedUserActive : (first[CURRENT_USER_ACTIVE] as boolean)
  const enrollmentUserActive =
    enrollment?.userId === token?.userId ? presentedUserActive : currentToken && enrollment?.userId === currentToken.userId ? currentUserActive : (first[ENROLLMENT_USER_ACTIVE] as boolean)
  const channels: ContextChannel[] = []
  for (const row of rows) {
    const channel = pick<ContextChannel>(row, CH)
    if (channel) channels.push({ ...channel, openCommands: row[OPEN_COMMANDS] as boolean })
  }
  return {
    certificate: pick<ContextCertificate>(first, C)!,
    enrollment,
    channels,
    presented: token ? { token, userActive: presentedUserActive, grantCreatedAt: ms(first[GRANT_CREATED]) } : null,
    current: currentToken ? { token: currentToken, userActive: currentUserActive } : null,
    userActive: enrollment ? enrollmentUserActive : null,
  }
}
