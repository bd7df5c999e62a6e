/**
 * Service discovery (PROTOCOL.md section 1): which team's enroll URL a user-identifier gets. With
 * ENROLL_DOMAINS unset every domain goes to the Default team; with it set, only the listed domains are
 * served, each by its team (created by name at start when missing), and any other domain is refused.
 */
import type { Config } from '../config/index.js'
import { MODEL_FAMILIES, parseUserIdentifier, WellKnownFailure, wellKnownResponse, type WellKnownResponse } from '../protocol/discovery.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client } from '../storage/database.js'
import { ensureTeamNamed, findTeam, teamOfUrl } from '../storage/teams.js'
import type { Team } from '../storage/types.js'

export interface DiscoveryDeps {
  db: Client
  config: Config
  urls: ServerUrls
}

export interface DiscoveryQuery {
  userIdentifier: unknown
  modelFamily: unknown
}

export interface DiscoveryService {
  /** Resolves ENROLL_DOMAINS to teams, creating missing ones. Runs once; call it at start. */
  prepare(): Promise<void>
  /** The answer for a device, or a WellKnownFailure (403) saying why not. */
  discover(query: DiscoveryQuery): Promise<{ response: WellKnownResponse; team: Team }>
}

export function createDiscoveryService({ db, config, urls }: DiscoveryDeps): DiscoveryService {
  const refuse = (description: string, message: string) => new WellKnownFailure(description, message)
  const allowed = config.enrollment.modelFamilies as readonly string[]

  /** domain -> team id; null means the Default team. */
  let domains: Promise<Map<string, string | null>> | undefined
  const prepare = () => {
    domains ??= (async () => {
      const map = new Map<string, string | null>()
      for (const { domain, team } of config.enrollment.domains ?? []) {
        map.set(domain, team === undefined ? null : (await ensureTeamNamed(db, team)).id)
      }
      return map
    })().catch((err) => {
      domains = undefined // a database hiccup at start must not stick
      throw err
    })
    return domains
  }

  return {
    prepare: async () => {
      await prepare()
    },

    async discover(query) {
      const id = parseUserIdentifier(query.userIdentifier)
      if ('problem' in id) throw refuse(id.problem, 'Enter your work account as name@domain and try again.')

      const family = query.modelFamily
      // Absent on clients that predate the parameter: the enroll endpoint still checks PRODUCT.
      if (family !== undefined && (typeof family !== 'string' || !allowed.includes(family))) {
        const known = typeof family === 'string' && (MODEL_FAMILIES as readonly string[]).includes(family)
        throw refuse(
          known ? `model family ${family} is not enabled (ENROLL_MODEL_FAMILIES)` : 'model-family is not a known model family',
          `${config.orgName} does not allow enrolling this kind of device.`,
        )
      }

      let teamId: string | null = null
      if (config.enrollment.domains) {
        const mapped = (await prepare()).get(id.domain)
        if (mapped === undefined) throw refuse(`domain ${id.domain} is not served by this server (ENROLL_DOMAINS)`, `${config.orgName} does not manage devices for accounts at ${id.domain}.`)
        teamId = mapped
      }
      const team = teamId ? await findTeam(db, teamId) : await teamOfUrl(db, null)
      if (!team) throw new Error(`the team for ${id.domain} no longer exists; restart the server to create it again`)
      return { response: wellKnownResponse(urls.enroll(team.enrollmentToken), team.enrollmentType === 'device' ? 'device' : 'user'), team }
    },
  }
}
