/**
 * Teams: the organisation units users enroll into, each with the unguessable enrollment token that sits
 * in its enroll, SSO and token URLs (PROTOCOL.md section 0).
 */
import { randomBytes } from 'node:crypto'
import type { Client, Db } from './database.js'
import type { Team } from './types.js'

/** 192 random bits, URL-safe: the per-team path segment of enroll, SSO and token URLs. */
export function newEnrollmentToken(): string {
  return randomBytes(24).toString('base64url')
}

/** Creates the Default team on first start; safe when several processes start at once. */
export async function ensureDefaultTeam(db: Db): Promise<Team> {
  const existing = await db.team.findFirst({ where: { isDefault: true } })
  if (existing) return existing
  // ON CONFLICT DO NOTHING against the partial unique index on is_default: one insert wins.
  await db.team.createMany({ data: [{ name: 'Default', enrollmentToken: newEnrollmentToken(), isDefault: true }], skipDuplicates: true })
  return db.team.findFirstOrThrow({ where: { isDefault: true } })
}

export function findTeam(db: Db, id: string): Promise<Team | null> {
  return db.team.findUnique({ where: { id } })
}

/**
 * The team of a URL: the one whose enrollment token is in the path, or the Default team for the URLs
 * without one (`/api/mdm/apple/enroll`, `/mdm/sso`, `/api/v1/mdm/oauth2/token`). Null when the token
 * names no team.
 */
export async function teamOfUrl(db: Db, enrollmentToken: string | null | undefined): Promise<Team | null> {
  if (enrollmentToken === undefined || enrollmentToken === null || enrollmentToken === '') return db.team.findFirst({ where: { isDefault: true } })
  // Tokens are base64url; anything else cannot match and need not reach the database.
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(enrollmentToken)) return null
  return db.team.findUnique({ where: { enrollmentToken } })
}

/**
 * The team with this name, created when missing (ENROLL_DOMAINS names teams). Names are not unique in
 * the schema, so creation runs under a transaction-scoped advisory lock: processes starting together
 * create one team, and every later lookup finds the oldest team of that name.
 */
export async function ensureTeamNamed(db: Client, name: string): Promise<Team> {
  const oldest = { where: { name }, orderBy: [{ createdAt: 'asc' as const }, { id: 'asc' as const }] }
  const existing = await db.team.findFirst(oldest)
  if (existing) return existing
  return db.$transaction(async (tx) => {
    await tx.$executeRawUnsafe("SELECT pg_advisory_xact_lock(hashtext('byod-mdm:teams-by-name'))")
    return (await tx.team.findFirst(oldest)) ?? tx.team.create({ data: { name, enrollmentToken: newEnrollmentToken() } })
  })
}
