/**
 * Everything a check-in or command report needs to decide, in one round trip (issue 15): the identity
 * certificate by fingerprint, the enrollment it is bound to with its channels, the bearer token the
 * request presented (with its user's state and its sign-in time), and the enrollment's current token and
 * user for requests that carry none. The services apply their rules to this snapshot instead of asking
 * the database one question at a time; every write still happens under its own rules (storage/enrollments).
 */
import { Prisma } from '../generated/prisma/client.js'
import type { Sql } from './database.js'
import type { AccessToken, ContextCertificate, ContextChannel, ContextEnrollment } from './types.js'

export type { ContextCertificate, ContextChannel, ContextEnrollment }

/** The bearer token a request presented, with what the bearer rules read about it. */
export interface PresentedToken {
  token: AccessToken
  userActive: boolean
  /** Its OAuth 2 grant's creation (the interactive sign-in behind a refreshed token), when it has one. */
  grantCreatedAt: Date | null
}

/** The columns the ContextCertificate, ContextEnrollment and ContextChannel rows leave out (storage/types.ts). */
const LEFT_OUT = new Set(['certificateDer', 'deviceInfo', 'ddmStatus'])

export interface DeviceContext {
  certificate: ContextCertificate
  /** The enrollment the certificate itself is bound to; a renewed certificate's first use binds it (enrollments.ts). */
  enrollment: ContextEnrollment | null
  channels: ContextChannel[]
  /** By the hash of the presented token; null when none was presented or it is unknown. */
  presented: PresentedToken | null
  /** The enrollment's current token (revoked or not) and whether its user is active. */
  current: { token: AccessToken; userActive: boolean } | null
  /** Whether the enrollment's user is active (null without an enrollment). */
  userActive: boolean | null
}

const snake = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/** `alias.column AS "prefix.field"` for every scalar field of a model (our columns are its fields in snake_case). */
function columns(alias: string, prefix: string, fields: Record<string, string>): string {
  return Object.keys(fields)
    .filter((f) => !LEFT_OUT.has(f))
    .map((f) => `${alias}.${snake(f)} AS "${prefix}.${f}"`)
    .join(', ')
}

function pick<T>(row: Record<string, unknown>, prefix: string): T | null {
  if (row[`${prefix}.id`] === null || row[`${prefix}.id`] === undefined) return null
  const out: Record<string, unknown> = {}
  const start = prefix.length + 1
  for (const key in row) {
    if (!key.startsWith(prefix) || key.charCodeAt(prefix.length) !== 46) continue
    const value = row[key]
    // Bytes as Prisma reads them: a plain Uint8Array (pg gives a Buffer).
    out[key.slice(start)] = Buffer.isBuffer(value) ? new Uint8Array(value) : value
  }
  return out as T
}

const SELECT = [
  columns('c', 'c', Prisma.DeviceCertificateScalarFieldEnum),
  columns('e', 'e', Prisma.MdmEnrollmentScalarFieldEnum),
  columns('ch', 'ch', Prisma.MdmChannelScalarFieldEnum),
  columns('t', 't', Prisma.AccessTokenScalarFieldEnum),
  columns('ct', 'ct', Prisma.AccessTokenScalarFieldEnum),
  'tu.active AS "tu.active"',
  'g.created_at AS "g.createdAt"',
  'cu.active AS "cu.active"',
  'eu.active AS "eu.active"',
].join(',\n  ')

/**
 * One row per channel of the bound enrollment (at least one row), or none when no certificate has this
 * fingerprint. `tokenHash` null: no token was presented.
 */
const STATEMENT = {
  name: 'mdm_device_context',
  text: `SELECT ${SELECT}
FROM device_certificates c
LEFT JOIN mdm_enrollment_certificates mec ON mec.device_certificate_id = c.id
LEFT JOIN mdm_enrollments e ON e.id = mec.mdm_enrollment_id
LEFT JOIN mdm_channels ch ON ch.mdm_enrollment_id = e.id
LEFT JOIN access_tokens t ON t.token_hash = $2
LEFT JOIN users tu ON tu.id = t.user_id
LEFT JOIN oauth2_grants g ON g.id = t.oauth2_grant_id
LEFT JOIN access_tokens ct ON ct.id = e.current_access_token_id
LEFT JOIN users cu ON cu.id = ct.user_id
LEFT JOIN users eu ON eu.id = e.user_id
WHERE c.fingerprint_sha256 = $1
ORDER BY ch.enrollment_user_id NULLS FIRST`,
}

export async function loadDeviceContext(sql: Sql, fingerprint: string, tokenHash: Uint8Array | null): Promise<DeviceContext | null> {
  const rows = await sql.query<Record<string, unknown>>(STATEMENT, [fingerprint, tokenHash ? Buffer.from(tokenHash) : null])
  const first = rows[0]
  if (!first) return null
  const token = pick<AccessToken>(first, 't')
  const currentToken = pick<AccessToken>(first, 'ct')
  const enrollment = pick<ContextEnrollment>(first, 'e')
  return {
    certificate: pick<ContextCertificate>(first, 'c')!,
    enrollment,
    channels: rows.map((r) => pick<ContextChannel>(r, 'ch')).filter((c): c is ContextChannel => c !== null),
    presented: token ? { token, userActive: first['tu.active'] as boolean, grantCreatedAt: (first['g.createdAt'] as Date | null) ?? null } : null,
    current: currentToken ? { token: currentToken, userActive: first['cu.active'] as boolean } : null,
    userActive: enrollment ? (first['eu.active'] as boolean) : null,
  }
}
