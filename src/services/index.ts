/**
 * services/: the use cases. Each takes storage (a database client), configuration and keys, and returns
 * plain data; none sees Fastify. Routes reach them through `app.services`; they reach the database only
 * through storage/ (imports point one way: routes -> services -> storage).
 *
 * All wiring of use cases happens here, once.
 */
import type { Config } from '../config/index.js'
import { OidcClient } from '../identity/oidc.js'
import type { ServerUrls } from '../protocol/urls.js'
import type { Client, Sql } from '../storage/database.js'
import { createAbmService, type AbmService } from './abm.js'
import { createCheckinService, type CheckinService } from './checkin.js'
import { createCommandService, type CommandService } from './commands.js'
import { createDeclarationService, type DeclarationService } from './declarations.js'
import { createDiscoveryService, type DiscoveryService } from './discovery.js'
import { createEnrollmentRecords, type EnrollmentRecords } from './enrollment-records.js'
import { createEnrollmentService, type EnrollmentService } from './enrollment.js'
import { createEssoService, type EssoService } from './esso.js'
import type { ServerKeys } from './keys.js'
import { createMdmAccess } from './mdm-access.js'
import { createOAuth2Service, type OAuth2Service } from './oauth2.js'
import { createPushService, type PushLogger, type PushService } from './push.js'
import { createRateLimitService, type RateLimitService } from './rate-limits.js'
import { createSsoService, type SsoService } from './sso.js'
import { ScepService } from './scep.js'
import { createTeamService, type TeamService } from './teams.js'
import { createUserService, type UserService } from './users.js'

export interface ServiceDeps {
  db: Client
  /** The database's plain SQL runner (storage/database.ts Sql), for the check-in hot path. */
  sql: Sql
  config: Config
  keys: ServerKeys
  urls: ServerUrls
  log: PushLogger
}

export interface Services {
  discovery: DiscoveryService
  enrollment: EnrollmentService
  oauth2: OAuth2Service
  sso: SsoService
  scep: ScepService
  checkin: CheckinService
  commands: CommandService
  esso: EssoService
  declarations: DeclarationService
  enrollments: EnrollmentRecords
  /** APNs wake-up pushes; close() it when the app closes. */
  push: PushService
  teams: TeamService
  users: UserService
  /** The Apple Business Manager connection (discovery fallback, GetToken com.apple.maid). */
  abm: AbmService
  /** Request counters of the rate limits, shared by every process. */
  rateLimits: RateLimitService
}

export function createServices(deps: ServiceDeps): Services {
  // One OIDC client per process: it caches the IdP's discovery document and JWKS.
  const oidc = deps.config.oidc ? new OidcClient(deps.config.oidc) : null
  const esso = createEssoService(deps)
  const abm = createAbmService({ ...deps, log: deps.log })
  // New profiles offer com.apple.mdm.token while ABM is connected and MAID_TOKENS is on.
  const enrollment = createEnrollmentService({ ...deps, oidc, esso, maidTokens: () => abm.maidTokensEnabled() })
  // Re-authentication on check-in answers with exactly the enroll endpoint's challenge.
  const mdm = { ...deps, challenge: enrollment.challenge }
  const access = createMdmAccess(mdm)
  // New commands and removals push the device's channels.
  const push = createPushService(deps)
  const commands = createCommandService(mdm, access, push)
  const declarations = createDeclarationService({ ...deps, esso, commands: () => commands })
  return {
    discovery: createDiscoveryService(deps),
    enrollment,
    oauth2: createOAuth2Service({ ...deps, oidc }),
    sso: createSsoService(deps),
    scep: new ScepService(deps),
    checkin: createCheckinService(mdm, access, declarations, { maid: (now) => abm.maidToken(now) }),
    commands,
    esso,
    declarations,
    enrollments: createEnrollmentRecords({ ...deps, notifier: push }),
    push,
    teams: createTeamService(deps),
    users: createUserService(deps),
    abm,
    rateLimits: createRateLimitService(deps),
  }
}
