/**
 * Users as an administrator manages them: look them up, and revoke or reactivate their access.
 *
 * Revoking deactivates the user and revokes every access token and OAuth 2 grant of theirs at once. What
 * follows is enforced where tokens are checked (services/mdm-identity.ts, tokens.ts, sso.ts, oauth2.ts):
 * their tokens stop working; the next check-in of their device that carries a bearer token gets the
 * re-authentication 401, the macOS device channel (no token) is answered 200 and gets no command; a new
 * sign-in of theirs is refused while they stay deactivated, and token refreshes fail.
 */
import { NotFoundError } from '../errors.js'
import type { Client } from '../storage/database.js'
import type { PageAfter } from '../storage/listing.js'
import type { User } from '../storage/types.js'
import { activateUser, deactivateUser, enrollmentsOfUser, findUser, listUsers, tokensOfUser, type EnrollmentSummary, type TokenSummary } from '../storage/users.js'

export type { EnrollmentSummary, TokenSummary }

export interface UserDeps {
  db: Client
}

/** How many of a user's enrollments one answer lists (newest first); `enrollmentCount` counts them all. */
export const ENROLLMENTS_SHOWN = 100

export interface UserDetails {
  user: User
  enrollments: EnrollmentSummary[]
  enrollmentCount: number
  tokens: TokenSummary
}

export interface UserService {
  /** Newest first; `limit + 1` rows say there is a next page. */
  list(query: { email?: string; after?: PageAfter; limit: number }): Promise<User[]>
  get(id: string): Promise<UserDetails>
  /** Deactivates the user and revokes all their tokens and grants; how many were still live. */
  revoke(id: string): Promise<{ details: UserDetails; wasActive: boolean; revoked: { accessTokens: number; grants: number } }>
  /** Lets the user sign in again; tokens revoked before stay revoked. */
  reactivate(id: string): Promise<{ details: UserDetails; wasActive: boolean }>
}

export function createUserService({ db }: UserDeps): UserService {
  const notFound = () => new NotFoundError('No user has this id')

  async function details(user: User): Promise<UserDetails> {
    const [enrollments, tokens] = await Promise.all([enrollmentsOfUser(db, user.id, ENROLLMENTS_SHOWN), tokensOfUser(db, user.id, new Date())])
    return { user, enrollments: enrollments.newest, enrollmentCount: enrollments.total, tokens }
  }

  async function existing(id: string): Promise<User> {
    const user = await findUser(db, id)
    if (!user) throw notFound()
    return user
  }

  return {
    list: (query) => listUsers(db, query),

    async get(id) {
      return details(await existing(id))
    },

    async revoke(id) {
      const before = await existing(id)
      const done = await deactivateUser(db, id, 'admin_revoked', new Date())
      if (!done) throw notFound()
      return { details: await details(done.user), wasActive: before.active, revoked: { accessTokens: done.accessTokens, grants: done.grants } }
    },

    async reactivate(id) {
      const before = await existing(id)
      const user = await activateUser(db, id)
      if (!user) throw notFound()
      return { details: await details(user), wasActive: before.active }
    },
  }
}
