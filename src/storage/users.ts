/**
 * Users (as the IdP vouches for them) and their access tokens: what a sign-in hands the device and the
 * device presents as bearer. Tokens are looked up by their SHA-256 hash; the value itself never reaches
 * the database.
 */
import type { Client, Db } from './database.js'
import { after, equalsIgnoringCase, newestFirst, type PageAfter } from './listing.js'
import type { AccessToken, MdmEnrollment, Team, User } from './types.js'

export interface UserData {
  issuer: string
  subject: string
  email: string | null
  displayName: string | null
  groups: string[]
}

/** Creates or refreshes the user with this (issuer, subject). */
export function upsertUser(db: Db, data: UserData): Promise<User> {
  const { issuer, subject, ...rest } = data
  return db.user.upsert({
    where: { issuer_subject: { issuer, subject } },
    create: { issuer, subject, ...rest },
    update: rest,
  })
}

export function findUser(db: Db, id: string): Promise<User | null> {
  return db.user.findUnique({ where: { id } })
}

export interface NewAccessToken {
  tokenHash: Uint8Array<ArrayBuffer>
  userId: string
  teamId: string
  method: string
  userIdentifier: string | null
  createdAt: Date
  enrollUntil: Date
  expiresAt: Date | null
  oauth2GrantId: string | null
  refreshedFromId: string | null
}

export function createAccessToken(db: Db, data: NewAccessToken): Promise<AccessToken> {
  return db.accessToken.create({ data })
}

export type TokenWithUser = AccessToken & { user: User; team: Team }

/** The token with this hash, with its user and team; null when unknown. */
export function findAccessTokenByHash(db: Db, tokenHash: Uint8Array<ArrayBuffer>): Promise<TokenWithUser | null> {
  return db.accessToken.findUnique({ where: { tokenHash }, include: { user: true, team: true } })
}

export function findAccessTokenById(db: Db, id: string): Promise<AccessToken | null> {
  return db.accessToken.findUnique({ where: { id } })
}

export function findAccessTokenWithUser(db: Db, id: string): Promise<(AccessToken & { user: User }) | null> {
  return db.accessToken.findUnique({ where: { id }, include: { user: true } })
}

/** Users newest first, `limit + 1` of them (the extra one says there is a next page); `email` ignores case. */
export function listUsers(db: Db, p: { email?: string; after?: PageAfter; limit: number }): Promise<User[]> {
  const where = p.email === undefined ? {} : { email: equalsIgnoringCase(p.email) }
  return db.user.findMany({ where: { AND: [after(p.after), where] }, orderBy: newestFirst, take: p.limit + 1 })
}

export type EnrollmentSummary = Pick<MdmEnrollment, 'id' | 'teamId' | 'status' | 'productName' | 'lastSeenAt' | 'createdAt'>

/** A user's MDM enrollments, newest first, at most `limit`, and how many there are in all. */
export async function enrollmentsOfUser(db: Db, userId: string, limit: number): Promise<{ total: number; newest: EnrollmentSummary[] }> {
  const [total, newest] = await Promise.all([
    db.mdmEnrollment.count({ where: { userId } }),
    db.mdmEnrollment.findMany({
      where: { userId },
      orderBy: newestFirst,
      take: limit,
      select: { id: true, teamId: true, status: true, productName: true, lastSeenAt: true, createdAt: true },
    }),
  ])
  return { total, newest }
}

export interface TokenSummary {
  /** Not revoked and not expired (OAuth 2 access tokens expire; web sign-in tokens live until revoked). */
  usable: number
  revoked: number
  /** The newest interactive sign-in: the newest token that is not a refresh of another. */
  lastSignInAt: Date | null
}

export async function tokensOfUser(db: Db, userId: string, now: Date): Promise<TokenSummary> {
  const [usable, revoked, lastSignIn] = await Promise.all([
    db.accessToken.count({ where: { userId, revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] } }),
    db.accessToken.count({ where: { userId, revokedAt: { not: null } } }),
    db.accessToken.findFirst({ where: { userId, refreshedFromId: null }, orderBy: { createdAt: 'desc' }, select: { createdAt: true } }),
  ])
  return { usable, revoked, lastSignInAt: lastSignIn?.createdAt ?? null }
}

/**
 * Deactivates a user and revokes every access token and OAuth 2 grant of theirs, in one transaction;
 * null when there is no such user. Revoking again finds nothing left to revoke (counts 0).
 *
 * The order avoids both lost tokens and deadlocks with the sign-in writes: grants first, as a refresh
 * locks its grant before it touches the user (`continueGrant`), so a refresh in progress finishes and
 * its tokens are revoked below; then the user, which a fresh sign-in (`createSignInGrant`) upserts first,
 * so one in progress finishes and its grant is caught by the second pass, and a later one sees the user
 * deactivated and writes nothing; then every token.
 */
export async function deactivateUser(db: Client, id: string, reason: string, now: Date): Promise<{ user: User; accessTokens: number; grants: number } | null> {
  return db.$transaction(async (tx) => {
    const revokeGrants = () => tx.oAuth2Grant.updateMany({ where: { userId: id, revokedAt: null }, data: { revokedAt: now, revokedReason: reason } })
    const first = await revokeGrants()
    const { count } = await tx.user.updateMany({ where: { id }, data: { active: false } })
    if (count === 0) return null
    const second = await revokeGrants()
    const tokens = await tx.accessToken.updateMany({ where: { userId: id, revokedAt: null }, data: { revokedAt: now } })
    return { user: await tx.user.findUniqueOrThrow({ where: { id } }), accessTokens: tokens.count, grants: first.count + second.count }
  })
}

/** Lets a deactivated user sign in again; their revoked tokens stay revoked. Null when there is no such user. */
export async function activateUser(db: Client, id: string): Promise<User | null> {
  return db.$transaction(async (tx) => {
    const { count } = await tx.user.updateMany({ where: { id }, data: { active: true } })
    return count === 0 ? null : tx.user.findUniqueOrThrow({ where: { id } })
  })
}
