/**
 * `/api/v1/admin/commands`: one command for many enrollments, a command's status and result, cancelling
 * one not sent yet, and the list. Statuses: pending, sent, acknowledged, error, format_error, not_now,
 * expired, cancelled.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { audit } from './audit.js'
import { decodeCursor, errorBody, listOf, page, pageQuery } from './pagination.js'

export const commandView = z
  .object({
    command_uuid: z.string(),
    enrollment_id: z.uuid(),
    channel: z.string().describe('EnrollmentID, or EnrollmentID:EnrollmentUserID for a macOS user channel'),
    request_type: z.string(),
    command: z.unknown().describe('the Command dictionary as queued'),
    status: z.enum(['pending', 'sent', 'acknowledged', 'error', 'format_error', 'not_now', 'expired', 'cancelled']),
    created_at: z.string(),
    expires_at: z.string().nullable(),
    sent_at: z.string().nullable(),
    deliveries: z.number().int().describe('times the command was handed to the device'),
    not_now_at: z.string().nullable(),
    completed_at: z.string().nullable(),
    cancelled_at: z.string().nullable(),
    result: z.unknown().describe("the device's report as received (plist data as Base64), ErrorChain included; null until it reports"),
  })
  .describe('A queued command')

/** A Command dictionary with the options `channel` and `expires_at` beside it (no Apple command has them). */
export const commandBody = z
  .object({
    RequestType: z.string().min(1).max(128),
    channel: z.string().min(1).max(256).optional(),
    expires_at: z.iso.datetime({ offset: true }).optional(),
  })
  .catchall(z.unknown())

const OPTIONS = new Set(['channel', 'expires_at'])

/** The command and the options beside it. Every other key is the command's: Apple adds keys every release. */
export function splitCommandBody(body: z.infer<typeof commandBody>): { command: Record<string, unknown>; channel?: string; expiresAt?: Date } {
  const command = Object.fromEntries(Object.entries(body).filter(([k]) => !OPTIONS.has(k)))
  return { command, channel: body.channel, expiresAt: body.expires_at ? new Date(body.expires_at) : undefined }
}

const uuidParams = z.object({ command_uuid: z.string().min(1).max(64) })

export default async function commandRoutes(base: FastifyInstance) {
  const app = base.withTypeProvider<ZodTypeProvider>()
  const commands = app.services.commands

  app.post(
    '/commands',
    {
      schema: {
        summary: 'Queue one command for many enrollments',
        description: 'All or none: every enrollment must exist, take commands, and allow the command (400 names the enrollment and the rule). Each enrollment gets its own CommandUUID.',
        tags: ['commands'],
        body: z.object({
          enrollment_ids: z.array(z.uuid()).min(1).max(1000),
          command: commandBody.describe('the Command dictionary (RequestType and its keys)'),
          channel: z.string().min(1).max(256).optional(),
          expires_at: z.iso.datetime({ offset: true }).optional(),
        }),
        response: { 201: z.object({ items: z.array(commandView) }), 400: errorBody, 404: errorBody, 409: errorBody },
      },
    },
    async (request, reply) => {
      const inner = splitCommandBody(request.body.command)
      const items = await commands.enqueue(request.body.enrollment_ids, inner.command, {
        channel: request.body.channel ?? inner.channel,
        expiresAt: request.body.expires_at ? new Date(request.body.expires_at) : inner.expiresAt,
      })
      audit(request, 'command.queue', { requestType: items[0]?.request_type, commands: items.map((c) => ({ enrollmentId: c.enrollment_id, commandUuid: c.command_uuid })) })
      return reply.code(201).send({ items })
    },
  )

  app.get(
    '/commands',
    {
      schema: {
        summary: 'List commands',
        tags: ['commands'],
        querystring: z.object({
          enrollment_id: z.uuid().optional(),
          status: z.enum(['pending', 'sent', 'acknowledged', 'error', 'format_error', 'not_now', 'cancelled']).optional(),
          request_type: z.string().max(128).optional(),
          ...pageQuery,
        }),
        response: { 200: listOf(commandView), 400: errorBody },
      },
    },
    async (request) => {
      const q = request.query
      const rows = await commands.list({ mdmEnrollmentId: q.enrollment_id, status: q.status, requestType: q.request_type }, q.limit + 1, decodeCursor(q.cursor))
      return page(rows, q.limit, ({ createdAt: _c, id: _i, ...view }) => view)
    },
  )

  app.get(
    '/commands/:command_uuid',
    { schema: { summary: "A command's status and result", tags: ['commands'], params: uuidParams, response: { 200: commandView, 404: errorBody } } },
    async (request) => commands.get(request.params.command_uuid),
  )

  app.delete(
    '/commands/:command_uuid',
    {
      schema: {
        summary: 'Cancel a command not sent yet',
        description: 'Only a pending command (or one the device answered NotNow) can be cancelled; one sent is 409.',
        tags: ['commands'],
        params: uuidParams,
        response: { 200: commandView, 404: errorBody, 409: errorBody },
      },
    },
    async (request) => {
      const view = await commands.cancel(request.params.command_uuid)
      audit(request, 'command.cancel', { commandUuid: view.command_uuid, enrollmentId: view.enrollment_id })
      return view
    },
  )
}
