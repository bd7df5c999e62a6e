/**
 * The OpenAPI 3 document of the administration API, generated from the routes' zod schemas
 * (@fastify/swagger with fastify-type-provider-zod's transform: one source for validation, types and
 * documentation), served at /api/v1/openapi.json, and the interactive documentation at /docs
 * (@fastify/swagger-ui, its assets served from the package: no CDN). Only /api/v1/admin routes are
 * documented: the device-facing endpoints speak Apple's protocols, documented in PROTOCOL.md.
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonSchemaTransform } from 'fastify-type-provider-zod'

export const ADMIN_PREFIX = '/api/v1/admin'

export default fp(
  async (app: FastifyInstance) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: `${app.config.orgName} device management: administration API`,
          description:
            'Teams, users, enrollments, commands, pushes and the Apple Business Manager connection of an account-driven enrollment MDM server. Every request needs `Authorization: Bearer <ADMIN_API_TOKEN>`. Lists answer `{"items": [...], "next_cursor": ...}`; pass `next_cursor` back as `cursor` for the next page.',
          version: '1',
        },
        servers: [{ url: app.config.serverUrl }],
        components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_TOKEN' } } },
        security: [{ bearerAuth: [] }],
      },
      transform: (input) => {
        const out = jsonSchemaTransform(input)
        return input.url.startsWith(ADMIN_PREFIX) ? out : { ...out, schema: { ...out.schema, hide: true } }
      },
    })
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: false } })
    app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  },
  { name: 'openapi', dependencies: ['services'] },
)
