/**
 * Declarative device management over check-in (PROTOCOL.md section 9): the set of declarations a team's
 * enrollments are served, its tokens, and the status reports devices send.
 *
 * A team's set is the Enrollment SSO declarations its document carries (services/esso.ts, when the
 * delivery includes declarations) and the declarations an administrator assigned to the team. The
 * DeclarationsToken is a digest of the set's (Identifier, ServerToken) pairs: it changes exactly when
 * the set does. When it changes (an administrator's edit, other ESSO settings at start), every live
 * enrollment of the team gets a DeclarativeManagement command with the new SyncTokens and a push.
 */
import type { Config } from '../config/index.js'
import { BadRequestError, NotFoundError } from '../errors.js'
import { canonicalJson, sha256Hex, type JsonObject } from '../protocol/canonical.js'
import { checkDeclaration } from '../protocol/command-rules.js'
import { EMPTY_DECLARATIONS_TOKEN, makeDeclaration, type Declaration, type DeclarationItemsResponse, type TokensResponse } from '../protocol/declarations.js'
import type { Client } from '../storage/database.js'
import { deleteTeamDeclaration, liveEnrollmentIdsOfTeam, putTeamDeclaration, recordDeclarationsToken, storeDdmStatus, teamDeclarations } from '../storage/declarations.js'
import { findTeam } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import type { CommandService } from './commands.js'
import type { EssoService } from './esso.js'

export type DeclarationCategory = 'activation' | 'configuration' | 'asset' | 'management'

/** `com.apple.activation.simple` -> activation, and so on (DeclarationBase: the Type names the kind). */
export function categoryOf(type: string): DeclarationCategory | undefined {
  const m = /^com\.apple\.(activation|configuration|asset|management)\./.exec(type)
  return m ? (m[1] as DeclarationCategory) : undefined
}

export interface DeclarationService {
  /** The declarations the team's enrollments are served. */
  setOf(team: Team): Promise<Declaration[]>
  tokens(team: Team, enrolledAt: Date): Promise<TokensResponse>
  items(team: Team): Promise<DeclarationItemsResponse>
  /** The declaration at `declaration/<category>/<identifier>`, or undefined. */
  find(team: Team, category: string, identifier: string): Promise<Declaration | undefined>
  /** Keeps the channel's latest status report (the `Data` of a `status` request: Base64 JSON). */
  storeStatus(mdmChannelId: string, data: Uint8Array | undefined, now?: Date): Promise<void>
  /** The declarations an administrator assigned to the team. */
  assigned(teamId: string): Promise<Declaration[]>
  /** Adds or replaces one; its ServerToken is derived from its content. */
  assign(teamId: string, declaration: { Type: string; Identifier: string; Payload: JsonObject }): Promise<Declaration>
  unassign(teamId: string, identifier: string): Promise<void>
  /**
   * Records the team's current DeclarationsToken; when it changed, queues the DeclarativeManagement
   * command for each live enrollment of the team. The number of enrollments told.
   */
  sync(team: Team, now?: Date): Promise<number>
}

/** Identifiers travel in DDM paths (`declaration/<category>/<Identifier>`): no slash; DeclarationBase: at most 64 octets. */
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

export function createDeclarationService(deps: { db: Client; config: Config; esso: EssoService; commands: () => CommandService }): DeclarationService {
  const { db, esso } = deps

  async function setOf(team: Team): Promise<Declaration[]> {
    const own = (await teamDeclarations(db, team.id)).map((d) => ({ Type: d.type, Identifier: d.identifier, ServerToken: d.serverToken, Payload: d.payload as JsonObject }))
    const fromEsso = esso.declarations(team)
    // The ESSO set's identifiers win: an assigned declaration cannot shadow what the device got at enrollment.
    const taken = new Set(fromEsso.map((d) => d.Identifier))
    return [...fromEsso, ...own.filter((d) => !taken.has(d.Identifier))]
  }

  function tokenOf(set: Declaration[]): string {
    if (set.length === 0) return EMPTY_DECLARATIONS_TOKEN
    return sha256Hex(canonicalJson(set.map((d) => [d.Identifier, d.ServerToken]).sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0))))
  }

  const service: DeclarationService = {
    setOf,

    async tokens(team, enrolledAt) {
      const set = await setOf(team)
      // When the set last changed, as this device sees it: it got the set it has when it enrolled.
      const changed = team.declarationsChangedAt && team.declarationsChangedAt > enrolledAt ? team.declarationsChangedAt : enrolledAt
      return { SyncTokens: { DeclarationsToken: tokenOf(set), Timestamp: `${changed.toISOString().slice(0, 19)}Z` } }
    },

    async items(team) {
      const set = await setOf(team)
      const response: DeclarationItemsResponse = { Declarations: { Activations: [], Configurations: [], Assets: [], Management: [] }, DeclarationsToken: tokenOf(set) }
      const lists = { activation: 'Activations', configuration: 'Configurations', asset: 'Assets', management: 'Management' } as const
      for (const d of set) {
        const category = categoryOf(d.Type)
        if (category) response.Declarations[lists[category]].push({ Identifier: d.Identifier, ServerToken: d.ServerToken })
      }
      return response
    },

    async find(team, category, identifier) {
      return (await setOf(team)).find((d) => d.Identifier === identifier && categoryOf(d.Type) === category)
    },

    async storeStatus(mdmChannelId, data, now = new Date()) {
      let report: unknown = null
      if (data && data.length) {
        try {
          report = JSON.parse(Buffer.from(data).toString('utf8'))
        } catch {
          throw new BadRequestError('the status report is not JSON', { code: 'invalid_status_report' })
        }
      }
      if (!report || typeof report !== 'object' || Array.isArray(report)) throw new BadRequestError('the status report is not a JSON object', { code: 'invalid_status_report' })
      if (/\\u0000/.test(JSON.stringify(report))) throw new BadRequestError('the status report holds a NUL character', { code: 'invalid_status_report' })
      await storeDdmStatus(db, mdmChannelId, report as object, now)
    },

    async assigned(teamId) {
      if (!(await findTeam(db, teamId))) throw new NotFoundError(`no team ${teamId}`, { publicMessage: 'No such team' })
      return (await teamDeclarations(db, teamId)).map((d) => ({ Type: d.type, Identifier: d.identifier, ServerToken: d.serverToken, Payload: d.payload as JsonObject }))
    },

    async assign(teamId, input) {
      const team = await findTeam(db, teamId)
      if (!team) throw new NotFoundError(`no team ${teamId}`, { publicMessage: 'No such team' })
      if (!IDENTIFIER.test(input.Identifier) || Buffer.byteLength(input.Identifier) > 64) {
        throw new BadRequestError('Identifier must be at most 64 octets of letters, digits, dots, hyphens and underscores (it is part of a URL path)', { code: 'invalid_declaration' })
      }
      if (!categoryOf(input.Type)) throw new BadRequestError(`Type ${input.Type.slice(0, 100)} is not an activation, configuration, asset or management declaration`, { code: 'invalid_declaration' })
      const declaration = makeDeclaration(input.Type, input.Identifier, input.Payload)
      // The team's devices may be of any platform: the type, keys and types are checked, not one platform's rules.
      const rule = checkDeclaration(declaration)
      if (!rule.ok) throw new BadRequestError(rule.rule, { code: 'invalid_declaration' })
      if (esso.declarations(team).some((d) => d.Identifier === input.Identifier)) {
        throw new BadRequestError(`Identifier ${input.Identifier} belongs to the team's Enrollment SSO declarations`, { code: 'invalid_declaration' })
      }
      await putTeamDeclaration(db, teamId, { identifier: declaration.Identifier, type: declaration.Type, serverToken: declaration.ServerToken, payload: declaration.Payload }, new Date())
      await service.sync(team)
      return declaration
    },

    async unassign(teamId, identifier) {
      const team = await findTeam(db, teamId)
      if (!team) throw new NotFoundError(`no team ${teamId}`, { publicMessage: 'No such team' })
      if (!(await deleteTeamDeclaration(db, teamId, identifier))) throw new NotFoundError(`team ${teamId} has no declaration ${identifier.slice(0, 64)}`, { publicMessage: 'No such declaration' })
      await service.sync(team)
    },

    async sync(team, now = new Date()) {
      const token = tokenOf(await setOf(team))
      if (!(await recordDeclarationsToken(db, team.id, token, now))) return 0
      const enrollments = await liveEnrollmentIdsOfTeam(db, team.id)
      if (enrollments.length === 0) return 0
      const fresh = (await findTeam(db, team.id)) ?? team
      // Apple, "DeclarativeManagement" command: Data is the SyncTokens JSON; the device then syncs.
      const tokens = await service.tokens(fresh, new Date(0))
      const data = Buffer.from(JSON.stringify(tokens)).toString('base64')
      let told = 0
      for (const id of enrollments) {
        try {
          await deps.commands().enqueue([id], { RequestType: 'DeclarativeManagement', Data: { $data: data } }, { now })
          told++
        } catch {
          // An enrollment that ended between the list and the queue, or whose platform predates
          // declarative management: it syncs when it next asks for tokens.
        }
      }
      return told
    },
  }
  return service
}
