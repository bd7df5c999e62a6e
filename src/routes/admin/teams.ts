/**
 * `/api/v1/admin/teams`: list, read, create, rename or change the sign-in method of a team, and rotate
 * its enrollment token. There is no DELETE: enrollments, access tokens, profiles and SCEP certificates
 * reference their team, and an enrolled device keeps checking in with it (re-authentication challenges
 * are built from its team); a team an administrator no longer wants can have its token rotated so that
 * nobody new enrolls into it.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { TeamView } from '../../services/teams.js'
import { audit } from './audit.js'
import { idParams, isoDate, plainText, trimmedText } from './fields.js'
import { decodeCursor, errorBody, listOf, page, pageQuery } from './pagination.js'

const authMethod = z.enum(['saml', 'oauth2'])
const teamName = trimmedText(200).describe('1-200 characters, leading and trailing white space removed, no control characters; unique among teams ignoring case')
const teamAuthMethod = authMethod
  .nullable()
  .describe('How users of this team sign in: `saml` (web sign-in page, apple-as-web), `oauth2` (apple-oauth2, needs OIDC_ISSUER), or null for the server default (AUTH_METHOD)')

const enrollmentType = z
  .enum(['user', 'device'])
  .describe('`user`: personal devices, user enrollment (discovery mdm-byod, EnrollmentMode BYOD); `device`: organisation-owned devices, account-driven device enrollment (mdm-adde, ADDE). Profiles already issued keep their mode.')

const teamJson = z.object({
  id: z.uuid(),
  name: z.string(),
  is_default: z.boolean().describe('The Default team: served by the URLs without a token, and by discovery when ENROLL_DOMAINS does not say otherwise'),
  auth_method: teamAuthMethod,
  effective_auth_method: authMethod.describe('auth_method, or AUTH_METHOD when that is null'),
  enrollment_type: enrollmentType,
  enrollment_token: z.string().describe('The secret path segment of this team\'s enroll, sign-in and OAuth 2 token URLs'),
  enroll_url: z.string().describe('The enroll URL of this team'),
  discovery: z
    .object({ Servers: z.array(z.object({ Version: z.enum(['mdm-byod', 'mdm-adde']), BaseURL: z.string() })) })
    .describe('Exactly the JSON a device gets from /.well-known/com.apple.remotemanagement when discovery sends it to this team'),
  created_at: z.iso.datetime(),
})

const toJson = (t: TeamView): z.infer<typeof teamJson> => ({
  id: t.id,
  name: t.name,
  is_default: t.isDefault,
  auth_method: t.authMethod,
  effective_auth_method: t.effectiveAuthMethod,
  enrollment_type: t.enrollmentType,
  enrollment_token: t.enrollmentToken,
  enroll_url: t.enrollUrl,
  discovery: t.discovery,
  created_at: isoDate(t.createdAt),
})

const errors = { 400: errorBody, 401: errorBody, 404: errorBody }
const tags = ['teams']

export default async function teamRoutes(scope: FastifyInstance) {
  const app = scope.withTypeProvider<ZodTypeProvider>()
  const teams = app.services.teams

  app.get(
    '/teams',
    {
      schema: {
        tags,
        summary: 'List teams',
        description: 'Newest first. `name` finds the team of that name, ignoring case.',
        querystring: z.strictObject({ ...pageQuery, name: plainText(200).optional().describe('exact name, ignoring case') }),
        response: { 200: listOf(teamJson), 400: errorBody, 401: errorBody },
      },
    },
    async (request) => {
      const { limit, cursor, name } = request.query
      return page(await teams.list({ name, after: decodeCursor(cursor), limit }), limit, toJson)
    },
  )

  app.get('/teams/:id', { schema: { tags, summary: 'Read a team', params: idParams, response: { 200: teamJson, ...errors } } }, async (request) =>
    toJson(await teams.get(request.params.id)),
  )

  app.post(
    '/teams',
    {
      schema: {
        tags,
        summary: 'Create a team',
        description: 'The team gets its own enrollment token; give its `enroll_url` (or point discovery at it with ENROLL_DOMAINS) to its users.',
        body: z.strictObject({ name: teamName, auth_method: teamAuthMethod.default(null), enrollment_type: enrollmentType.default('user') }),
        response: { 201: teamJson, 400: errorBody, 401: errorBody, 409: errorBody },
      },
    },
    async (request, reply) => {
      const { name, auth_method, enrollment_type } = request.body
      const team = await teams.create({ name, authMethod: auth_method, enrollmentType: enrollment_type })
      audit(request, 'team.create', { teamId: team.id, name: team.name, authMethod: team.authMethod, enrollmentType: team.enrollmentType })
      return reply.code(201).send(toJson(team))
    },
  )

  app.patch(
    '/teams/:id',
    {
      schema: {
        tags,
        summary: 'Rename a team or set its sign-in method',
        description: [
          'Give `name`, `auth_method`, `enrollment_type` or several; `auth_method: null` returns the team to the server default (AUTH_METHOD). The Default team may be renamed too. A new `enrollment_type` applies to sign-ins from then on: devices enrolled before keep their enrollment.',
          '',
          'Settings name teams by name, so a rename has effects there: ENROLL_DOMAINS creates the teams it names at start, so after renaming a team listed there the next start creates a new, empty team of the old name (with its own token) and discovery sends that domain to it; rename the team in ENROLL_DOMAINS too. A team restricted to IdP groups by SSO_TEAM_GROUPS can only be renamed to a name listed there with the same groups (409 otherwise), so a rename never opens it to everyone.',
        ].join('\n'),
        params: idParams,
        body: z
          .strictObject({ name: teamName.optional(), auth_method: teamAuthMethod.optional(), enrollment_type: enrollmentType.optional() })
          .refine((b) => b.name !== undefined || b.auth_method !== undefined || b.enrollment_type !== undefined, 'give name, auth_method, enrollment_type or several'),
        response: { 200: teamJson, ...errors, 409: errorBody },
      },
    },
    async (request) => {
      const { name, auth_method, enrollment_type } = request.body
      const { team, changed } = await teams.update(request.params.id, { name, authMethod: auth_method, enrollmentType: enrollment_type })
      audit(request, 'team.update', { teamId: team.id, changed })
      return toJson(team)
    },
  )

  app.post(
    '/teams/:id/rotate-token',
    {
      schema: {
        tags,
        summary: "Rotate a team's enrollment token",
        description:
          'Gives the team a new enrollment token. The enroll, sign-in and OAuth 2 token URLs with the old token stop working at once: a device in the middle of enrolling with them starts again from discovery. Enrolled devices keep working (their re-authentication challenges name the new URLs); OAuth 2 token refreshes sent to the old token URL fail, so such a device is asked to sign in again once its access token expires.',
        params: idParams,
        response: { 200: z.object({ team: teamJson, message: z.string() }), ...errors },
      },
    },
    async (request) => {
      const team = await teams.rotateToken(request.params.id)
      // The token is a URL secret: the log names the team only.
      audit(request, 'team.rotate_token', { teamId: team.id })
      const defaultUrls = team.isDefault
        ? ' The URLs without a token (/api/mdm/apple/enroll, /mdm/sso, /api/v1/mdm/oauth2/token) still serve the Default team.'
        : ''
      return {
        team: toJson(team),
        message: `The previous enrollment token no longer works: enroll, sign-in and OAuth 2 token URLs containing it now fail, and devices enrolling with them must start again. Enrolled devices keep working; OAuth 2 token refreshes sent to the old token URL fail, so those devices sign in again when their access token expires.${defaultUrls}`,
      }
    },
  )
}
