/**
 * All wiring of use cases in one place: each service gets the storage, configuration and keys it needs.
 * Routes reach services through `app.services`; services never see Fastify.
 */
import type { Config } from '../config/index.js'
import type { PrismaClient } from '../generated/prisma/client.js'
import { OidcClient } from '../identity/oidc.js'
import type { ServerUrls } from '../protocol/urls.js'
import { createCheckinService, type CheckinService } from './checkin.js'
import { createDiscoveryService, type DiscoveryService } from './discovery.js'
import { createEnrollmentService, type EnrollmentService } from './enrollment.js'
import type { ServerKeys } from './keys.js'
import { createOAuth2Service, type OAuth2Service } from './oauth2.js'
import { createSsoService, type SsoService } from './sso.js'
import { ScepService } from './scep.js'

export interface ServiceDeps {
  prisma: PrismaClient
  config: Config
  keys: ServerKeys
  urls: ServerUrls
}

export interface Services {
  discovery: DiscoveryService
  enrollment: EnrollmentService
  oauth2: OAuth2Service
  sso: SsoService
  scep: ScepService
  checkin: CheckinService
}

export function createServices(deps: ServiceDeps): Services {
  // One OIDC client per process: it caches the IdP's discovery document and JWKS.
  const oidc = deps.config.oidc ? new OidcClient(deps.config.oidc) : null
  const enrollment = createEnrollmentService({ ...deps, oidc })
  return {
    discovery: createDiscoveryService(deps),
    enrollment,
    oauth2: createOAuth2Service({ ...deps, oidc }),
    sso: createSsoService(deps),
    scep: new ScepService(deps),
    // Re-authentication on check-in answers with exactly the enroll endpoint's challenge.
    checkin: createCheckinService({ ...deps, challenge: (team) => enrollment.challenge(team) }),
  }
}
