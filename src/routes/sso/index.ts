/**
 * Web sign-in (`apple-as-web`, PROTOCOL.md section 3):
 *   GET  /mdm/sso[/:enrollmentToken]?user-identifier=  the page the device opens
 *   POST /api/v1/mdm/sso                                the page asks for the IdP URL (JSON)
 *   POST /api/v1/mdm/sso/callback                       SAML assertion consumer: 308 to the device
 *   POST /api/v1/mdm/sso/dev                            development sign-in (no IdP configured)
 *   GET  /api/v1/mdm/sso/metadata                       SP metadata for the IdP administrator
 * Every route here is rate limited per client address (SSO_RATE_LIMIT per minute, counted in the database for all processes).
 * Pages and the callback answer errors with an HTML page (a sentence and the request id); the JSON
 * endpoints with `{error, message}`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { BadRequestError, TooManyRequestsError } from '../../errors.js'
import { SignInError } from '../../identity/index.js'
import { MAX_SAML_RESPONSE_LENGTH } from '../../identity/saml/response.js'
import { errorHandler, sendJsonError, type HttpError } from '../../plugins/errors.js'
import { MAX_USER_IDENTIFIER_LENGTH, normalizeUserIdentifier } from '../../protocol/web-signin.js'
import type { CompletedSignIn } from '../../services/sso.js'
import { addFormParser } from '../bodies.js'
import { registerRateLimit } from '../rate-limit.js'
import { errorPage, newNonce, pageHeaders, ssoPage } from './html.js'

/** A SAMLResponse (base64) plus RelayState and form encoding overhead. */
const FORM_BODY_LIMIT = MAX_SAML_RESPONSE_LENGTH * 2
const JSON_BODY_LIMIT = 4 * 1024

const enrollmentToken = z.string().max(128)
const userIdentifier = z.string().max(MAX_USER_IDENTIFIER_LENGTH)

export default async function ssoRoutes(app: FastifyInstance) {
  await registerRateLimit(app, 'sso', {
    max: app.config.sso.rateLimitPerMinute,
    errorResponseBuilder: () => new TooManyRequestsError('Too many sign-in attempts from your network. Wait a minute and try again.'),
  })
  addFormParser(app, { bodyLimit: FORM_BODY_LIMIT })
  await app.register(htmlRoutes)
  await app.register(jsonRoutes)
}

const htmlRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, urls, services } = app
  const sso = services.sso

  app.setErrorHandler(
    errorHandler({
      map: (err) => (err instanceof SignInError ? signInRefusal(err) : undefined),
      send: (reply, http, request) => {
        const nonce = newNonce()
        return reply.headers(pageHeaders(nonce)).send(errorPage({ nonce, orgName: config.orgName, message: humane(http).message, requestId: request.id }))
      },
    }),
  )

  const page = async (request: FastifyRequest, reply: FastifyReply, token: string | null) => {
    const raw = (request.query as Record<string, unknown>)['user-identifier']
    const identifier = normalizeUserIdentifier(raw)
    if (raw !== undefined && raw !== '' && identifier === null) throw new BadRequestError('user-identifier is not a usable identifier')
    const team = await sso.team(token)
    if (sso.mode === 'none') throw new SignInError('not_configured', 'no SAML IdP is configured and the development sign-in is off')
    const mode = sso.mode
    const nonce = newNonce()
    const origin = new URL(urls.ssoStart).origin
    return reply.headers(pageHeaders(nonce, { connect: origin, forms: origin })).send(
      ssoPage({
        nonce,
        orgName: config.orgName,
        userIdentifier: identifier,
        enrollmentToken: token ? team.enrollmentToken : null,
        mode,
        startUrl: urls.ssoStart,
        devSignInUrl: urls.ssoDevSignIn,
      }),
    )
  }
  app.get('/mdm/sso', async (request, reply) => page(request, reply, null))
  app.get('/mdm/sso/:enrollmentToken', { schema: { params: z.object({ enrollmentToken }) } }, async (request, reply) =>
    page(request, reply, request.params.enrollmentToken),
  )

  const finished = (request: FastifyRequest, reply: FastifyReply, done: CompletedSignIn) => {
    // Never the token: the location carries it, and res.headers.location is redacted from logs anyway.
    request.log.info({ method: done.method, userId: done.userId, teamId: done.teamId, accessTokenId: done.accessTokenId }, 'web sign-in completed')
    return reply.code(308).header('location', done.location).header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').send()
  }

  app.post(
    '/api/v1/mdm/sso/callback',
    { schema: { body: z.object({ SAMLResponse: z.string().min(1).max(MAX_SAML_RESPONSE_LENGTH), RelayState: z.string().max(1024).optional() }) } },
    async (request, reply) => finished(request, reply, await sso.completeSaml(request.body)),
  )

  app.post(
    '/api/v1/mdm/sso/dev',
    { schema: { body: z.object({ email: z.string().max(254), enrollmentToken: enrollmentToken.optional(), userIdentifier: userIdentifier.optional() }) } },
    async (request, reply) => {
      const { email, enrollmentToken: token, userIdentifier: typed } = request.body
      const done = await sso.completeDev({ enrollmentToken: token || null, userIdentifier: normalizeUserIdentifier(typed), email })
      return finished(request, reply, done)
    },
  )
}

const jsonRoutes: FastifyPluginAsyncZod = async (app) => {
  const sso = app.services.sso

  app.setErrorHandler(errorHandler({ map: (err) => (err instanceof SignInError ? signInRefusal(err) : undefined), send: sendJsonError }))

  app.post(
    '/api/v1/mdm/sso',
    {
      bodyLimit: JSON_BODY_LIMIT,
      schema: {
        body: z.object({ enrollmentToken: enrollmentToken.nullish(), userIdentifier: userIdentifier.nullish() }).strict(),
        response: { 200: z.object({ url: z.string() }) },
      },
    },
    async (request, reply) => {
      const url = await sso.startSaml({ enrollmentToken: request.body.enrollmentToken || null, userIdentifier: normalizeUserIdentifier(request.body.userIdentifier) })
      return reply.header('cache-control', 'no-store').send({ url })
    },
  )

  app.get('/api/v1/mdm/sso/metadata', async (_request, reply) => {
    return reply.type('application/samlmetadata+xml; charset=utf-8').send(sso.samlMetadata())
  })
}

/** A refused sign-in as the user sees it. */
function signInRefusal(err: SignInError): HttpError & { userFacing: true } {
  return { status: err.status, code: err.failure, message: err.userMessage, userFacing: true }
}

/** HTML pages speak to people: Fastify's own 4xx messages (validation details) become a sentence. */
function humane(http: HttpError & { userFacing?: true }): HttpError {
  if (http.userFacing) return http
  const sentences: Record<number, string> = {
    400: 'The request was not valid.',
    404: 'This page does not exist.',
    413: 'The answer from your identity provider is too large.',
    415: 'The request was not in a format this server accepts.',
    429: 'Too many sign-in attempts from your network. Wait a minute and try again.',
    503: 'The server cannot complete sign-ins right now. Try again in a moment.',
  }
  return { ...http, message: sentences[http.status] ?? (http.status >= 500 ? 'Something went wrong on the server.' : 'The request could not be completed.') }
}
