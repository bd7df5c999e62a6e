/**
 * A team's declarative management and Enrollment SSO in the admin API:
 *   GET    /teams/{id}/declarations               the set its enrollments are served (ESSO + assigned)
 *   PUT    /teams/{id}/declarations/{identifier}   assign a declaration ({"Type", "Payload"})
 *   DELETE /teams/{id}/declarations/{identifier}
 *   GET    /teams/{id}/esso                        its Enrollment SSO settings (its own or the server's)
 *   PUT    /teams/{id}/esso                        its own settings ({"enabled": false} turns ESSO off)
 *   DELETE /teams/{id}/esso                        back to the server's ESSO_* settings
 * A change of the set (a declaration, or settings that change the ESSO declarations) queues a
 * DeclarativeManagement command to the team's enrollments and pushes them.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { BadRequestError, NotFoundError } from '../../errors.js'
import type { JsonObject } from '../../protocol/canonical.js'
import { essoSettingsFromJson, essoSettingsToJson } from '../../services/esso-settings.js'
import { setTeamEssoSettings } from '../../storage/declarations.js'
import { findTeam } from '../../storage/teams.js'
import { audit } from './audit.js'
import { errorBody } from './pagination.js'

const declaration = z.object({ Type: z.string(), Identifier: z.string(), ServerToken: z.string(), Payload: z.record(z.string(), z.unknown()), source: z.enum(['esso', 'admin']) })
const teamParams = z.object({ id: z.uuid() })
const itemParams = z.object({ id: z.uuid(), identifier: z.string().min(1).max(64) })

const essoSettings = z
  .object({
    enabled: z.boolean().optional().describe('false: no Enrollment SSO for this team'),
    itunes_store_id: z.number().int().positive().optional(),
    associated_domains: z.array(z.string().min(1).max(253)).max(100).optional(),
    associated_domains_direct_downloads: z.boolean().optional(),
    extensible_sso: z.array(z.record(z.string(), z.unknown())).max(20).optional().describe('each the content of one com.apple.extensiblesso payload; plist data as {"$data": "<Base64>"}'),
    certificate_payloads: z.array(z.record(z.string(), z.unknown())).max(20).optional(),
    delivery: z.enum(['profile', 'declarations', 'both']).optional(),
    developer_app_ids: z.array(z.string().min(1).max(255)).max(50).optional(),
    app_license_assignment: z.enum(['User', 'Device']).optional(),
  })
  .strict()

const essoView = z.object({
  source: z.enum(['team', 'server']),
  settings: z.unknown(),
  mode: z.enum(['standard', 'developer']).nullable(),
  document_url: z.string().nullable(),
})

export default async function declarationRoutes(base: FastifyInstance) {
  const app = base.withTypeProvider<ZodTypeProvider>()
  const { declarations, esso } = app.services
  const db = app.db.prisma

  async function team(id: string) {
    const found = await findTeam(db, id)
    if (!found) throw new NotFoundError(`no team ${id}`, { publicMessage: 'No such team' })
    return found
  }

  app.get(
    '/teams/:id/declarations',
    { schema: { summary: "The declarations a team's enrollments are served", tags: ['declarations'], params: teamParams, response: { 200: z.object({ items: z.array(declaration), next_cursor: z.null(), declarations_token: z.string() }), 404: errorBody } } },
    async (request) => {
      const t = await team(request.params.id)
      const fromEsso = new Set(esso.declarations(t).map((d) => d.Identifier))
      const set = await declarations.setOf(t)
      const items = set.map((d) => ({ ...d, source: fromEsso.has(d.Identifier) ? ('esso' as const) : ('admin' as const) }))
      return { items, next_cursor: null, declarations_token: (await declarations.items(t)).DeclarationsToken }
    },
  )

  app.put(
    '/teams/:id/declarations/:identifier',
    {
      schema: {
        summary: 'Assign a declaration to a team',
        description: 'Body: {"Type": "com.apple.configuration....", "Payload": {...}}. The ServerToken is derived from the content. Checked against Apple\'s declaration types.',
        tags: ['declarations'],
        params: itemParams,
        body: z.object({ Type: z.string().min(1).max(200), Payload: z.record(z.string(), z.unknown()) }).strict(),
        response: { 200: declaration, 400: errorBody, 404: errorBody },
      },
    },
    async (request) => {
      const d = await declarations.assign(request.params.id, { Type: request.body.Type, Identifier: request.params.identifier, Payload: request.body.Payload as JsonObject })
      audit(request, 'declaration.assign', { teamId: request.params.id, identifier: d.Identifier, type: d.Type, serverToken: d.ServerToken })
      return { ...d, source: 'admin' as const }
    },
  )

  app.delete(
    '/teams/:id/declarations/:identifier',
    { schema: { summary: 'Remove a declaration from a team', tags: ['declarations'], params: itemParams, response: { 204: z.null(), 404: errorBody } } },
    async (request, reply) => {
      await declarations.unassign(request.params.id, request.params.identifier)
      audit(request, 'declaration.unassign', { teamId: request.params.id, identifier: request.params.identifier })
      return reply.code(204).send(null)
    },
  )

  const viewOf = async (id: string) => {
    const t = await team(id)
    const settings = esso.settingsFor(t)
    return {
      source: t.essoSettings === null || t.essoSettings === undefined ? ('server' as const) : ('team' as const),
      settings: essoSettingsToJson(settings),
      mode: settings ? esso.modeFor(settings) : null,
      document_url: settings ? (esso.modeFor(settings) === 'developer' ? app.urls.essoDeveloper(t.enrollmentToken) : app.urls.esso(t.enrollmentToken)) : null,
    }
  }

  app.get('/teams/:id/esso', { schema: { summary: "A team's Enrollment SSO settings", tags: ['esso'], params: teamParams, response: { 200: essoView, 404: errorBody } } }, async (request) => viewOf(request.params.id))

  app.put(
    '/teams/:id/esso',
    {
      schema: {
        summary: "Set a team's own Enrollment SSO settings",
        description: 'The documents built from them must obey every rule of Enrollment SSO (400 names the broken one). {"enabled": false} turns Enrollment SSO off for the team.',
        tags: ['esso'],
        params: teamParams,
        body: essoSettings,
        response: { 200: essoView, 400: errorBody, 404: errorBody },
      },
    },
    async (request) => {
      const t = await team(request.params.id)
      const settings = essoSettingsFromJson(request.body)
      if (settings) {
        const problems = esso.problems(settings)
        if (problems.length) throw new BadRequestError(problems.join('; '), { code: 'invalid_esso_settings' })
      }
      await setTeamEssoSettings(db, t.id, request.body)
      const told = await declarations.sync((await findTeam(db, t.id))!)
      audit(request, 'team.esso.set', { teamId: t.id, enabled: settings !== null, enrollmentsTold: told })
      return viewOf(t.id)
    },
  )

  app.delete(
    '/teams/:id/esso',
    { schema: { summary: "Use the server's ESSO_* settings for a team", tags: ['esso'], params: teamParams, response: { 200: essoView, 404: errorBody } } },
    async (request) => {
      const t = await team(request.params.id)
      await setTeamEssoSettings(db, t.id, null)
      const told = await declarations.sync((await findTeam(db, t.id))!)
      audit(request, 'team.esso.reset', { teamId: t.id, enrollmentsTold: told })
      return viewOf(t.id)
    },
  )
}
