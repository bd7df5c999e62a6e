/**
 * Users (as the IdP vouches for them) and their access tokens: what a sign-in hands the device and the
 * device presents as bearer. Tokens are looked up by their SHA-256 hash; the value itself never reaches
 * the database.
 */
import type { Db } from './database.js'
import type { AccessToken, Team, User } from './types.js'

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
