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
import { loggerOptions } from './logging.js'
import databasePlugin from './plugins/database.js'
import errorsPlugin, { sendJsonError } from './plugins/errors.js'
import keysPlugin from './plugins/keys.js'
import servicesPlugin from './plugins/services.js'
import enrollmentRoutes from './routes/enroll/index.js'
import healthRoutes from './routes/health/index.js'
import mdmRoutes from './routes/mdm/index.js'
import oauth2Routes from './routes/oauth2/index.js'
import ssoRoutes from './routes/sso/index.js'
import scepRoutes from './routes/scep/index.js'
import type { Database, DatabaseOptions } from './storage/database.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
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
    // URLs the router refuses (malformed, a path segment over maxParamLength): Fastify's own answers echo
    // the path; ours give a code and a sentence, the path stays in the log (SECURITY.md row 29).
    frameworkErrors: (error, request, reply) => {
      const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400
      request.log.info({ reason: { code: error.code } }, 'request rejected')
      return sendJsonError(reply, { status, code: status === 414 ? 'uri_too_long' : 'bad_url', message: status === 414 ? 'The URL is too long' : 'The URL is malformed' })
    },
  }).withTypeProvider<ZodTypeProvider>()

  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)

  app.decorate('config', config)
  try {
    // Infrastructure first, as named plugins that declare what they need: database -> keys -> services.
    await app.register(databasePlugin, { config, database: deps.database, databaseOptions: deps.databaseOptions })
    await app.register(keysPlugin)
    await app.register(servicesPlugin)
  } catch (err) {
    // Close what was opened (the database plugin's onClose hook) before giving up.
    await app.close().catch(() => {})
    throw err
  }

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
