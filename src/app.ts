/**
 * The application as a Fastify instance: infrastructure first (logging, errors, database, keys), then one
 * plugin per endpoint group. `buildApp` does not listen; `server.ts` does, and tests use `inject` or
 * `listen({port: 0})` on the same app.
 */
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import type { DestinationStream } from 'pino'
import type { Config } from './config/index.js'
import { UnsupportedMediaTypeError } from './errors.js'
import { loggerOptions } from './logging.js'
import databasePlugin from './plugins/database.js'
import errorsPlugin, { sendJsonError } from './plugins/errors.js'
import keysPlugin from './plugins/keys.js'
import openapiPlugin from './plugins/openapi.js'
import servicesPlugin from './plugins/services.js'
import routes from './routes/index.js'
import type { Database, DatabaseOptions } from './storage/database.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
  interface FastifyContextConfig {
    /**
     * The route writes one line per request itself, with the request, status and time on it (the MDM
     * route: a device checks in all day, and Fastify's pair of lines per request tripled the log and a
     * measurable part of the check-in's CPU).
     */
    ownRequestLog?: boolean
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

/** A request's headers must arrive within this (never more than REQUEST_TIMEOUT). */
const HEADERS_TIMEOUT_MS = 10_000
/** How often Node checks requests against their timeouts; its default of 30 s let a trickled body live twice REQUEST_TIMEOUT. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000

/**
 * The HTTP server, with the limits that keep slow and idle clients from holding it (SECURITY.md row 28):
 * the whole request (headers and body) within REQUEST_TIMEOUT, checked every second; headers within
 * 10 s; idle keep-alive connections closed after 72 s (longer than the usual proxy's 60 s, so the proxy
 * closes first); at most MAX_CONNECTIONS open at once, further ones closed on arrival.
 */
function createHttpServer(config: Config, handler: http.RequestListener): http.Server {
  const server = http.createServer(
    {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, config.requestTimeoutMs),
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      keepAliveTimeout: 72_000,
    },
    handler,
  )
  // A socket that sends nothing at all: closed after twice REQUEST_TIMEOUT of silence.
  server.setTimeout(config.requestTimeoutMs * 2)
  server.maxConnections = config.maxConnections
  return server
}

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<App> {
  const logger = loggerOptions(config.logLevel)
  const app = Fastify({
    logger: deps.logStream ? { ...logger, stream: deps.logStream } : logger,
    genReqId: () => randomUUID(),
    // Fastify's "incoming request" and "request completed" lines, except on routes that write their own.
    logController: new LogController({ disableRequestLogging: (request) => request.routeOptions?.config?.ownRequestLog === true }),
    bodyLimit: DEFAULT_BODY_LIMIT,
    serverFactory: (handler) => createHttpServer(config, handler),
    trustProxy: config.trustProxy,
    // The first start creates the embedded database and migrations may be long: Fastify's 10 s is too short.
    pluginTimeout: 120_000,
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

  // The hooks every request runs are callback-style: an async hook costs a promise and a microtask hop
  // per request, measurable on the check-in path.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    // No endpoint accepts compressed bodies; without this they would be parsed as if they were plain.
    const encoding = request.headers['content-encoding']
    if (encoding && encoding.toLowerCase() !== 'identity') {
      return done(new UnsupportedMediaTypeError(`Content-Encoding ${encoding} is not supported`))
    }
    done()
  })

  // Graceful shutdown (SIGTERM): Node's server.close() ends the connections idle at that moment, but a
  // keep-alive connection whose request was still in flight stayed open after its answer until the
  // keep-alive timeout (72 s), past server.ts's grace period: the process exited 1, not 0, after finishing
  // the request (test/reliability/graceful-shutdown). While closing, every answer says Connection: close
  // and connections that fall idle are closed as they do.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    const timer = setInterval(() => app.server.closeIdleConnections(), 100)
    timer.unref()
    app.server.once('close', () => clearInterval(timer))
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })

  await app.register(errorsPlugin)
  await app.register(openapiPlugin)
  await app.register(routes)
  return app
}
