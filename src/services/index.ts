/**
 * All wiring of use cases in one place: each service gets the storage, configuration and keys it needs.
 * Routes reach services through `app.services`; services never see Fastify.
 */
import type { Config } from '../config.js'
import type { PrismaClient } from '../generated/prisma/client.js'
import type { ServerUrls } from '../protocol/urls.js'
import { createDiscoveryService, type DiscoveryService } from './discovery.js'
import { createEnrollmentService, type EnrollmentService } from './enrollment.js'
import type { ServerKeys } from './keys.js'
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
  scep: ScepService
}

export function createServices(deps: ServiceDeps): Services {
  return {
    discovery: createDiscoveryService(deps),
    enrollment: createEnrollmentService(deps),
    scep: new ScepService(deps),
  }
}
