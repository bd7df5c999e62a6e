/**
 * `/api/v1/admin/users`: the users sign-in created (one per IdP issuer and subject), and the two changes
 * an administrator makes to them: revoke (deactivate, and revoke every token and OAuth 2 grant) and
 * reactivate. Users are created and updated by sign-in only.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { ENROLLMENTS_SHOWN, type UserDetails } from '../../services/users.js'
import type { User } from '../../storage/types.js'
import { audit } from './audit.js'
import { idParams, isoDate, plainText } from './fields.js'
import { decodeCursor, errorBody, listOf, page, pageQuery } from './pagination.js'

const userJson = z.object({
  id: z.uuid(),
  issuer: z.string().describe('The SAML IdP entity id, the OIDC issuer, or `dev` for the development sign-in'),
  subject: z.string().describe("The IdP's identifier of the user"),
  email: z.string().nullable(),
  display_name: z.string().nullable(),
  groups: z.array(z.string()).describe('IdP groups as of the last sign-in'),
  active: z.boolean().describe('false: revoked; sign-in is refused and the user\'s devices ask for a sign-in'),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
})

const userDetailsJson = userJson.extend({
  enrollments: z
    .array(
      z.object({
        id: z.uuid(),
        team_id: z.uuid(),
        status: z.string().describe('authenticated, active, checked_out or removed'),
        product_name: z.string().nullable(),
        last_seen_at: z.iso.datetime(),
        created_at: z.iso.datetime(),
      }),
    )
    .describe(`The user's MDM enrollments, newest first (at most ${ENROLLMENTS_SHOWN})`),
  enrollment_count: z.number().int().describe('All MDM enrollments of the user'),
  tokens: z.object({
    usable: z.number().int().describe('Access tokens neither revoked nor expired'),
    revoked: z.number().int(),
    last_sign_in_at: z.iso.datetime().nullable().describe('The newest interactive sign-in (refreshes not counted)'),
  }),
})

const toJson = (u: User): z.infer<typeof userJson> => ({
  id: u.id,
  issuer: u.issuer,
  subject: u.subject,
  email: u.email,
  display_name: u.displayName,
  groups: u.groups,
  active: u.active,
  created_at: isoDate(u.createdAt),
  updated_at: isoDate(u.updatedAt),
})

const toDetailsJson = (d: UserDetails): z.infer<typeof userDetailsJson> => ({
  ...toJson(d.user),
  enrollments: d.enrollments.map((e) => ({
    id: e.id,
    team_id: e.teamId,
    status: e.status,
    product_name: e.productName,
    last_seen_at: isoDate(e.lastSeenAt),
    created_at: isoDate(e.createdAt),
  })),
  enrollment_count: d.enrollmentCount,
  tokens: { usable: d.tokens.usable, revoked: d.tokens.revoked, last_sign_in_at: d.tokens.lastSignInAt && isoDate(d.tokens.lastSignInAt) },
})

const errors = { 400: errorBody, 401: errorBody, 404: errorBody }
const tags = ['users']

export default async function userRoutes(scope: FastifyInstance) {
  const app = scope.withTypeProvider<ZodTypeProvider>()
  const users = app.services.users

  app.get(
    '/users',
    {
      schema: {
        tags,
        summary: 'List users',
        description: 'Newest first. `email` finds the users with that email address, ignoring case.',
        querystring: z.strictObject({ ...pageQuery, email: plainText(320).optional().describe('exact email address, ignoring case') }),
        response: { 200: listOf(userJson), 400: errorBody, 401: errorBody },
      },
    },
    async (request) => {
      const { limit, cursor, email } = request.query
      return page(await users.list({ email, after: decodeCursor(cursor), limit }), limit, toJson)
    },
  )

  app.get(
    '/users/:id',
    { schema: { tags, summary: 'Read a user, with their enrollments and tokens', params: idParams, response: { 200: userDetailsJson, ...errors } } },
    async (request) => toDetailsJson(await users.get(request.params.id)),
  )

  app.post(
    '/users/:id/revoke',
    {
      schema: {
        tags,
        summary: "Revoke a user's access",
        description:
          "Deactivates the user and revokes every access token and OAuth 2 grant of theirs. Their tokens stop working at once: the next check-in of their devices that carries a bearer token is answered 401 with the sign-in challenge, a Mac's device channel (no token) gets no more commands, and their sign-ins and token refreshes are refused while they stay deactivated. Revoking again changes nothing (`revoked` counts 0).",
        params: idParams,
        response: {
          200: z.object({
            user: userDetailsJson,
            revoked: z.object({ access_tokens: z.number().int(), oauth2_grants: z.number().int() }).describe('What this request revoked'),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { details, wasActive, revoked } = await users.revoke(request.params.id)
      audit(request, 'user.revoke', { userId: details.user.id, wasActive, revokedAccessTokens: revoked.accessTokens, revokedGrants: revoked.grants })
      return { user: toDetailsJson(details), revoked: { access_tokens: revoked.accessTokens, oauth2_grants: revoked.grants } }
    },
  )

  app.post(
    '/users/:id/reactivate',
    {
      schema: {
        tags,
        summary: 'Let a revoked user sign in again',
        description:
          'Sets the user active. Tokens revoked before stay revoked: the user signs in again when their device asks (its next check-in with a bearer token gets the sign-in challenge).',
        params: idParams,
        response: { 200: z.object({ user: userDetailsJson }), ...errors },
      },
    },
    async (request) => {
      const { details, wasActive } = await users.reactivate(request.params.id)
      audit(request, 'user.reactivate', { userId: details.user.id, wasActive })
      return { user: toDetailsJson(details) }
    },
  )
}
