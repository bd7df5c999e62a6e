/**
 * The application as a Fastify instance: infrastructure first (logging, errors, database, keys), then one
 * plugin per endpoint group. `buildApp` does not listen; `server.ts` does, and tests use `inject` or
 * `listen({port: 0})` on the same app.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import type { DestinationStream } from 'pino'
import type { Config } from './config/index.js'
import { UnsupportedMediaTypeError } from './errors.js'
import type { Team } from './generated/prisma/client.js'
import { loggerOptions } from './logging.js'
import errorsPlugin from './plugins/errors.js'
import { serverUrls, type ServerUrls } from './protocol/urls.js'
import enrollmentRoutes from './routes/enroll/index.js'
import healthRoutes from './routes/health/index.js'
import mdmRoutes from './routes/mdm/index.js'
import oauth2Routes from './routes/oauth2/index.js'
import ssoRoutes from './routes/sso/index.js'
import scepRoutes from './routes/scep/index.js'
import { openDatabase, type Database, type DatabaseOptions } from './storage/database.js'
import { migrate, readMigrations, type Migration } from './storage/migrate.js'
import { createServices, type Services } from './services/index.js'
import { loadServerKeys, type ServerKeys } from './services/keys.js'
import { ensureDefaultTeam } from './services/teams.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    db: Database
    keys: ServerKeys
    urls: ServerUrls
    services: Services
    /** The migrations this code knows; /readyz compares them with the database. */
    migrations: Migration[]
    defaultTeam: Team
  }
}

export interface AppDeps {
  /** An open database to use instead of opening the one in `config` (tests, a second instance). */
  database?: Database
  /** Database options overriding `config.database` (tests point it at their own database). */
  databaseOptions?: DatabaseOptions
  /** Where log lines go (tests capture them); standard output by default. */
  logStream?: DestinationStream
}

export type App = FastifyInstance

/** 1 MiB: the largest body any endpoint accepts; routes set lower limits where the protocol allows. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<App> {
  const logger = loggerOptions(config.logLevel)
  const app = Fastify({
    logger: deps.logStream ? { ...logger, stream: deps.logStream } : logger,
    genReqId: () => randomUUID(),
    bodyLimit: DEFAULT_BODY_LIMIT,
    // Slow-loris and stuck clients: a request must arrive completely within this time.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.requestTimeoutMs * 2,
    keepAliveTimeout: 72_000,
    trustProxy: config.trustProxy,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
  }).withTypeProvider<ZodTypeProvider>()

  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)

  const ownsDatabase = !deps.database
  const db = deps.database ?? (await openDatabase(deps.databaseOptions ?? config.database, app.log))
  try {
    const migrations = readMigrations()
    const session = await db.openSession()
    try {
      const result = await migrate(session, migrations, (msg) => app.log.info(msg))
      if (result.unknown.length) {
        app.log.warn({ migrations: result.unknown }, 'the database has migrations this version does not know: a newer version of the server has run against it')
      }
    } finally {
      await session.close()
    }
    const keys = await loadServerKeys(db.prisma, config, app.log)
    const defaultTeam = await ensureDefaultTeam(db.prisma)

    app.decorate('config', config)
    app.decorate('db', db)
    app.decorate('keys', keys)
    app.decorate('urls', serverUrls(config.serverUrl))
    app.decorate('migrations', migrations)
    app.decorate('defaultTeam', defaultTeam)
    app.decorate('services', createServices({ prisma: db.prisma, config, keys, urls: serverUrls(config.serverUrl) }))
  } catch (err) {
    if (ownsDatabase) await db.close().catch(() => {})
    throw err
  }
  if (ownsDatabase) app.addHook('onClose', async () => db.close())

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // No endpoint accepts compressed bodies; without this they would be parsed as if they were plain.
    const encoding = request.headers['content-encoding']
    if (encoding && encoding.toLowerCase() !== 'identity') {
      throw new UnsupportedMediaTypeError(`Content-Encoding ${encoding} is not supported`)
    }
  })

  await app.register(errorsPlugin)
  await app.register(healthRoutes)
  await app.register(oauth2Routes)
  await app.register(enrollmentRoutes)
  await app.register(ssoRoutes)
  await app.register(scepRoutes)
  await app.register(mdmRoutes)
  return app
}
