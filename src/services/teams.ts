/**
 * Teams as an administrator manages them: create, rename, choose the sign-in method, rotate the
 * enrollment token. Each team comes with what a person needs to use it: its enroll URL and the exact
 * service-discovery answer a device gets for it (PROTOCOL.md sections 0 and 1).
 *
 * Teams are never deleted: enrollments, tokens and profiles reference them, and a device enrolled into a
 * team keeps checking in with it.
 */
import type { Config } from '../config/index.js'
import { BadRequestError, ConflictError, NotFoundError } from '../errors.js'
import { wellKnownResponse, type WellKnownResponse } from '../protocol/discovery.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import type { PageAfter } from '../storage/listing.js'
import { createTeam, findTeam, listTeams, rotateEnrollmentToken, updateTeam, type TeamAuthMethod, type TeamEnrollmentType, type TeamRefusal } from '../storage/teams.js'
import type { Team } from '../storage/types.js'

export type { TeamAuthMethod, TeamEnrollmentType }

export interface TeamDeps {
  db: Client
  config: Config
  urls: ServerUrls
}

/** A team and what follows from it and the configuration. */
export interface TeamView {
  id: string
  name: string
  isDefault: boolean
  /** null: the server's AUTH_METHOD. */
  authMethod: TeamAuthMethod | null
  effectiveAuthMethod: TeamAuthMethod
  enrollmentType: TeamEnrollmentType
  enrollmentToken: string
  enrollUrl: string
  discovery: WellKnownResponse
  createdAt: Date
}

export interface TeamChanges {
  name?: string
  authMethod?: TeamAuthMethod | null
  enrollmentType?: TeamEnrollmentType
}

/** What an update changed, for the audit line: only the fields that differ. */
export type TeamDiff = { [K in keyof TeamChanges]?: { from: TeamChanges[K]; to: TeamChanges[K] } }

export interface TeamService {
  /** Newest first; `limit + 1` rows say there is a next page. */
  list(query: { name?: string; after?: PageAfter; limit: number }): Promise<TeamView[]>
  get(id: string): Promise<TeamView>
  create(input: { name: string; authMethod: TeamAuthMethod | null; enrollmentType?: TeamEnrollmentType }): Promise<TeamView>
  update(id: string, changes: TeamChanges): Promise<{ team: TeamView; changed: TeamDiff }>
  /** A new enrollment token: URLs with the old one stop working. */
  rotateToken(id: string): Promise<TeamView>
}

export function createTeamService({ db, config, urls }: TeamDeps): TeamService {
  const view = (team: Team): TeamView => {
    const authMethod = team.authMethod as TeamAuthMethod | null
    const enrollUrl = urls.enroll(team.enrollmentToken)
    return {
      id: team.id,
      name: team.name,
      isDefault: team.isDefault,
      authMethod,
      effectiveAuthMethod: authMethod ?? config.authMethod,
      enrollmentType: team.enrollmentType as TeamEnrollmentType,
      enrollmentToken: team.enrollmentToken,
      enrollUrl,
      discovery: wellKnownResponse(enrollUrl, team.enrollmentType as TeamEnrollmentType),
      createdAt: team.createdAt,
    }
  }

  /**
   * A team may only be set to a method this server can serve; otherwise its devices would get no
   * challenge at all (the enroll endpoint answers 500 for a team whose method is not configured).
   * null (AUTH_METHOD) always can: the configuration refuses to start otherwise.
   */
  function checkAuthMethod(method: TeamAuthMethod | null | undefined): void {
    if (method === 'oauth2' && config.oidc === null) {
      throw new BadRequestError('auth_method "oauth2" needs an OIDC provider, and none is configured (set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET)', {
        code: 'auth_method_unavailable',
      })
    }
    if (method === 'saml' && config.sso.saml === null && !config.sso.devSignIn) {
      throw new BadRequestError('auth_method "saml" needs a SAML identity provider (set SAML_IDP_METADATA), and none is configured nor is the development sign-in offered', {
        code: 'auth_method_unavailable',
      })
    }
  }

  /**
   * SSO_TEAM_GROUPS names teams: renaming a team listed there would silently open it to every signed-in
   * user (or change who may enroll). Refused unless the new name has the same groups there.
   */
  function checkGroupsKept(from: string, to: string): void {
    const before = config.sso.teamGroups[from]
    if (!before) return
    const after = config.sso.teamGroups[to]
    const same = after !== undefined && after.length === before.length && before.every((g) => after.includes(g))
    if (!same) {
      throw new ConflictError(
        'SSO_TEAM_GROUPS restricts this team to IdP groups under its current name; renaming it would change who may enroll into it. List the new name with the same groups in SSO_TEAM_GROUPS and restart first',
        { code: 'team_groups' },
      )
    }
  }

  function written(result: Team | TeamRefusal | null): Team {
    if (result === null || result === 'not_found') throw new NotFoundError('No team has this id')
    if (result === 'name_taken') throw new ConflictError('Another team already has this name', { code: 'name_taken' })
    return result
  }

  async function existing(id: string): Promise<Team> {
    return written(await findTeam(db, id))
  }

  return {
    async list(query) {
      return (await listTeams(db, query)).map(view)
    },

    async get(id) {
      return view(await existing(id))
    },

    async create(input) {
      checkAuthMethod(input.authMethod)
      return view(written(await createTeam(db, input)))
    },

    async update(id, changes) {
      checkAuthMethod(changes.authMethod)
      const before = await existing(id)
      if (changes.name !== undefined && changes.name !== before.name) checkGroupsKept(before.name, changes.name)
      const after = written(await updateTeam(db, id, changes))
      const changed: TeamDiff = {}
      if (before.name !== after.name) changed.name = { from: before.name, to: after.name }
      if (before.authMethod !== after.authMethod) changed.authMethod = { from: before.authMethod as TeamAuthMethod | null, to: after.authMethod as TeamAuthMethod | null }
      if (before.enrollmentType !== after.enrollmentType) changed.enrollmentType = { from: before.enrollmentType as TeamEnrollmentType, to: after.enrollmentType as TeamEnrollmentType }
      return { team: view(after), changed }
    },

    async rotateToken(id) {
      return view(written(await rotateEnrollmentToken(db, id)))
    },
  }
}
