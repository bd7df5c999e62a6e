/**
 * `/api/v1/admin/enrollments`: what is enrolled, its channels and push state; removing an enrollment
 * (the device is told to unenroll on its next request); stale enrollments; and queueing a command for one
 * enrollment.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { audit } from './audit.js'
import { commandBody, commandView, splitCommandBody } from './commands.js'
import { decodeCursor, errorBody, listOf, page, pageQuery } from './pagination.js'

const channel = z.object({
  channel_id: z.string(),
  type: z.enum(['device', 'user']),
  enrollment_user_id: z.string().nullable(),
  user_short_name: z.string().nullable(),
  user_long_name: z.string().nullable(),
  last_seen_at: z.string(),
  token_updated_at: z.string().nullable(),
  push: z.object({ has_token: z.boolean(), status: z.string().nullable(), status_at: z.string().nullable(), error: z.string().nullable(), token_invalid_at: z.string().nullable() }),
  ddm_status: z.unknown().describe('the latest declarative-management status report, decoded'),
  ddm_status_at: z.string().nullable(),
})

export const enrollmentView = z
  .object({
    id: z.uuid(),
    enrollment_id: z.string().describe("Apple's EnrollmentID"),
    status: z.enum(['authenticated', 'active', 'checked_out', 'removed']),
    stale: z.boolean().describe('not seen for STALE_AFTER'),
    enrollment_type: z.enum(['user', 'device']).describe('user enrollment (personal device) or account-driven device enrollment (organisation-owned)'),
    user: z.object({ id: z.uuid(), email: z.string().nullable(), display_name: z.string().nullable() }),
    team: z.object({ id: z.uuid(), name: z.string().nullable() }),
    device: z.record(z.string(), z.string().nullable()).describe('what Authenticate reported: product_name, os_version, build_version; macOS: device_name, model, model_name; device enrollment: udid, serial_number'),
    authenticated_at: z.string(),
    activated_at: z.string().nullable(),
    checked_out_at: z.string().nullable(),
    removed_at: z.string().nullable(),
    last_seen_at: z.string().describe('the last check-in or command report'),
    channels: z.array(channel),
  })
  .describe('An MDM enrollment')

const idParams = z.object({ id: z.uuid() })

export default async function enrollmentRoutes(base: FastifyInstance) {
  const app = base.withTypeProvider<ZodTypeProvider>()
  const records = app.services.enrollments

  app.get(
    '/enrollments',
    {
      schema: {
        summary: 'List enrollments',
        tags: ['enrollments'],
        querystring: z.object({
          enrollment_id: z.string().max(256).optional().describe("Apple's EnrollmentID"),
          user: z.string().max(320).optional().describe("the user's email"),
          team: z.string().max(200).optional().describe('team id or name'),
          status: z.enum(['authenticated', 'active', 'checked_out', 'removed', 'stale']).optional(),
          ...pageQuery,
        }),
        response: { 200: listOf(enrollmentView), 400: errorBody, 401: errorBody },
      },
    },
    async (request) => {
      const q = request.query
      const rows = await records.list({ enrollmentId: q.enrollment_id, user: q.user, team: q.team, status: q.status }, q.limit + 1, decodeCursor(q.cursor))
      return page(rows, q.limit, ({ createdAt: _c, ...view }) => view)
    },
  )

  app.get(
    '/enrollments/:id',
    { schema: { summary: 'Show an enrollment', tags: ['enrollments'], params: idParams, response: { 200: enrollmentView, 404: errorBody } } },
    async (request) => records.get(request.params.id),
  )

  app.delete(
    '/enrollments/:id',
    {
      schema: {
        summary: 'Remove an enrollment',
        description:
          'Ends management: open commands are cancelled, the device is pushed, and its next request is answered 403 {"code": "com.apple.unrecognized.device"}, so it unenrolls (iOS 17, macOS 14 and later).',
        tags: ['enrollments'],
        params: idParams,
        response: { 200: enrollmentView, 404: errorBody, 409: errorBody },
      },
    },
    async (request) => {
      const view = await records.remove(request.params.id)
      audit(request, 'enrollment.remove', { enrollmentId: view.id, appleEnrollmentId: view.enrollment_id, userId: view.user.id })
      return view
    },
  )

  app.post(
    '/enrollments/remove-stale',
    {
      schema: {
        summary: 'Remove every stale enrollment',
        description: 'Enrollments still authenticated or active but not seen for STALE_AFTER (CheckOut does not always arrive) are removed as DELETE /enrollments/{id} does.',
        tags: ['enrollments'],
        response: { 200: z.object({ removed: z.array(z.uuid()), count: z.number().int() }) },
      },
    },
    async (request) => {
      const removed = await records.removeStale()
      audit(request, 'enrollment.remove_stale', { count: removed.length, enrollmentIds: removed })
      return { removed, count: removed.length }
    },
  )

  app.post(
    '/enrollments/:id/commands',
    {
      schema: {
        summary: 'Queue a command for an enrollment',
        description:
          'The body is the Command dictionary as JSON, e.g. {"RequestType": "DeviceInformation", "Queries": ["OSVersion"]}. Plist data is written {"$data": "<Base64>"}, a date {"$date": "<ISO 8601>"}. Two top-level keys are options, not part of the command: `channel` (device, user, or an EnrollmentUserID) and `expires_at`; every other key goes to the device as written. The command must be one Apple allows for the device\'s platform, its channel and user enrollment (400 names the rule). The device is pushed.',
        tags: ['commands'],
        params: idParams,
        body: commandBody,
        response: { 201: commandView, 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (request, reply) => {
      const { command, channel: wanted, expiresAt } = splitCommandBody(request.body)
      const [queued] = await app.services.commands.enqueue([request.params.id], command, { channel: wanted, expiresAt })
      audit(request, 'command.queue', { enrollmentId: request.params.id, commandUuid: queued!.command_uuid, requestType: queued!.request_type, channel: queued!.channel })
      return reply.code(201).send(queued!)
    },
  )
}
