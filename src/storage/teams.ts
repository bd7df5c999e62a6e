/**
 * Teams: the organisation units users enroll into, each with the unguessable enrollment token that sits
 * in its enroll, SSO and token URLs (PROTOCOL.md section 0).
 */
import { randomBytes } from 'node:crypto'
import type { Client, Db, Tx } from './database.js'
import { after, equalsIgnoringCase, newestFirst, type PageAfter } from './listing.js'
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
  const oldest = oldestNamed(name)
  const existing = await db.team.findFirst(oldest)
  if (existing) return existing
  return db.$transaction(async (tx) => {
    await lockTeamNames(tx)
    return (await tx.team.findFirst(oldest)) ?? tx.team.create({ data: { name, enrollmentToken: newEnrollmentToken() } })
  })
}

/** The team ENROLL_DOMAINS means by this name (the oldest of that exact name), without creating it. */
export function findTeamNamed(db: Db, name: string): Promise<Team | null> {
  return db.team.findFirst(oldestNamed(name))
}

function oldestNamed(name: string) {
  return { where: { name }, orderBy: [{ createdAt: 'asc' as const }, { id: 'asc' as const }] }
}

/** Serialises everything that creates or renames teams, until the transaction ends. */
async function lockTeamNames(tx: Tx): Promise<void> {
  await tx.$executeRawUnsafe("SELECT pg_advisory_xact_lock(hashtext('byod-mdm:teams-by-name'))")
}

/** Teams newest first, `limit + 1` of them (the extra one says there is a next page); `name` ignores case. */
export function listTeams(db: Db, p: { name?: string; after?: PageAfter; limit: number }): Promise<Team[]> {
  const where = p.name === undefined ? {} : { name: equalsIgnoringCase(p.name) }
  return db.team.findMany({ where: { AND: [after(p.after), where] }, orderBy: newestFirst, take: p.limit + 1 })
}

export type TeamAuthMethod = 'saml' | 'oauth2'

/**
 * Why a team was not written: no team has the id, or another team already has the name (ignoring
 * case). Names stay unique through the admin API because ENROLL_DOMAINS and SSO_TEAM_GROUPS name teams:
 * two teams of one name would make those settings ambiguous.
 */
export type TeamRefusal = 'not_found' | 'name_taken'

async function nameTaken(tx: Tx, name: string, exceptId?: string): Promise<boolean> {
  const other = await tx.team.findFirst({ where: { name: equalsIgnoringCase(name), ...(exceptId ? { id: { not: exceptId } } : {}) }, select: { id: true } })
  return other !== null
}

/** A new team with a fresh enrollment token, unless another team has this name. */
export async function createTeam(db: Client, data: { name: string; authMethod: TeamAuthMethod | null; enrollmentType?: TeamEnrollmentType }): Promise<Team | TeamRefusal> {
  return db.$transaction(async (tx) => {
    await lockTeamNames(tx)
    if (await nameTaken(tx, data.name)) return 'name_taken'
    return tx.team.create({ data: { name: data.name, authMethod: data.authMethod, enrollmentType: data.enrollmentType ?? 'user', enrollmentToken: newEnrollmentToken() } })
  })
}

/** `user`: personal devices (user enrollment); `device`: organisation-owned ones (account-driven device enrollment). */
export type TeamEnrollmentType = 'user' | 'device'

/** Renames a team and/or sets its sign-in method (null: AUTH_METHOD) and/or its enrollment type. */
export async function updateTeam(db: Client, id: string, changes: { name?: string; authMethod?: TeamAuthMethod | null; enrollmentType?: TeamEnrollmentType }): Promise<Team | TeamRefusal> {
  return db.$transaction(async (tx) => {
    if (changes.name !== undefined) {
      await lockTeamNames(tx)
      if (await nameTaken(tx, changes.name, id)) return 'name_taken'
    }
    const { count } = await tx.team.updateMany({ where: { id }, data: changes })
    if (count === 0) return 'not_found'
    return tx.team.findUniqueOrThrow({ where: { id } })
  })
}

/** Gives a team a new enrollment token: URLs with the old one no longer name any team. Null when unknown. */
export async function rotateEnrollmentToken(db: Client, id: string): Promise<Team | null> {
  return db.$transaction(async (tx) => {
    const { count } = await tx.team.updateMany({ where: { id }, data: { enrollmentToken: newEnrollmentToken() } })
    return count === 0 ? null : tx.team.findUniqueOrThrow({ where: { id } })
  })
}

/** Every team, oldest first (start-up work over all teams: there are few). */
export function allTeams(db: Db): Promise<Team[]> {
  return db.team.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] })
}

/** Sets a team's enrollment type (ENROLL_DEVICE_TEAMS at start). */
export function setTeamEnrollmentType(db: Db, id: string, enrollmentType: TeamEnrollmentType): Promise<Team> {
  return db.team.update({ where: { id }, data: { enrollmentType } })
}
