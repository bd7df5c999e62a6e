/**
 * The command queue (table mdm_commands): one row per command per channel, first in first out by `seq`.
 * The next command is taken and marked sent in one statement that skips rows another request holds, so
 * concurrent requests (two server processes) never take one command at the same moment; a command sent and
 * not reported on is sent again when the channel's next session starts (Idle), so none is lost. Results
 * are written once: a report for a command that already ended changes nothing (devices resend).
 */
import type { Prisma } from '../generated/prisma/client.js'
import type { Client, Db, Sql } from './database.js'
import type { MdmCommand } from './types.js'

export type CommandStatus = 'pending' | 'sent' | 'not_now' | 'acknowledged' | 'error' | 'format_error' | 'cancelled'
/** Statuses in which a command still waits for the device (the queue index covers exactly these). */
export const OPEN_STATUSES: readonly CommandStatus[] = ['pending', 'sent', 'not_now']
export type FinalStatus = Extract<CommandStatus, 'acknowledged' | 'error' | 'format_error'>

export interface NewCommand {
  commandUuid: string
  mdmEnrollmentId: string
  mdmChannelId: string
  requestType: string
  /** The Command dictionary as tagged JSON. */
  command: Prisma.InputJsonValue
  expiresAt: Date | null
  createdAt: Date
}

/**
 * Queues commands, all or none, and returns them as stored (with their channel), read in the same
 * transaction: once it commits nothing else is asked of the database, so a caller told of a failure was
 * never queued (the Postgres outage drill caught a 503 for commands that had been queued).
 */
export async function enqueueCommands(db: Client, commands: NewCommand[]): Promise<(MdmCommand & { channel: { channelId: string } })[]> {
  return db.$transaction(async (tx) => {
    const out: (MdmCommand & { channel: { channelId: string } })[] = []
    for (const c of commands) out.push(await tx.mdmCommand.create({ data: c, include: { channel: { select: { channelId: true } } } }))
    return out
  })
}

/**
 * Takes the channel's next command and marks it sent, or null when none is due. An Idle starts a session
 * (`newSession`): every open command is due, including one sent before and never reported on (its answer
 * was lost) and one the device answered NotNow. Within a session (after a result) only commands never sent
 * are: a command is not handed out twice in one session, and a concurrent session on another server
 * process does not get the one this session holds.
 */
const TAKE_NEXT = {
  name: 'mdm_take_next_command',
  text: `UPDATE mdm_commands SET status = 'sent', sent_at = $2, deliveries = deliveries + 1
    WHERE id = (
      SELECT id FROM mdm_commands
      WHERE mdm_channel_id = $1
        AND status IN ('pending', 'sent', 'not_now')
        AND (status = 'pending' OR $3::boolean)
        AND (expires_at IS NULL OR expires_at > $2)
      ORDER BY seq
      LIMIT 1
      FOR UPDATE SKIP LOCKED
    )
    RETURNING command_uuid, command`,
}

export async function takeNextCommand(sql: Sql, mdmChannelId: string, now: Date, newSession: boolean): Promise<{ commandUuid: string; command: unknown } | null> {
  const rows = await sql.query<{ command_uuid: string; command: unknown }>(TAKE_NEXT, [mdmChannelId, now, newSession])
  const row = rows[0]
  return row ? { commandUuid: row.command_uuid, command: row.command } : null
}

export type ReportOutcome = 'stored' | 'duplicate' | 'unknown'

/**
 * Stores a final result (Acknowledged, Error, CommandFormatError) for the channel's own command: the
 * first report wins, a repeated one is a duplicate, a CommandUUID this channel was not sent is unknown.
 * With `takeNext`, the same statement also takes the channel's next command never sent (within a session
 * only those are due, as takeNextCommand with newSession false): one round trip and one commit for the
 * command cycle's report. The next command is the first pending one queued after the reported one (by
 * `seq`), so it is never the reported one, and the index scan starts there: every command the channel
 * worked through leaves earlier versions in the queue index until a VACUUM, and a scan from the channel's
 * first entry stepped over all of them (~600 rows per report in the benchmark's long queues). A pending
 * command below the reported one is one whose transaction committed after a later-numbered one was sent,
 * or one another request held at that moment; it goes with the channel's next Idle, which its own push
 * brings. The status condition is on the updated row itself, so of two concurrent reports Postgres
 * re-checks the second against the first's write and stores one.
 */
const STORE_RESULT = {
  name: 'mdm_store_result',
  text: `WITH target AS (SELECT id, seq FROM mdm_commands WHERE command_uuid = $2 AND mdm_channel_id = $1),
    stored AS (
      UPDATE mdm_commands m SET status = $3, result = $4::jsonb, completed_at = $5
      FROM target WHERE m.id = target.id AND m.status NOT IN ('acknowledged', 'error', 'format_error')
      RETURNING m.id
    ),
    next AS (
      UPDATE mdm_commands SET status = 'sent', sent_at = $5, deliveries = deliveries + 1
      WHERE $6::boolean AND id = (
        SELECT id FROM mdm_commands
        WHERE mdm_channel_id = $1
          AND status = 'pending'
          AND seq > coalesce((SELECT seq FROM target), 0)
          AND (expires_at IS NULL OR expires_at > $5)
        ORDER BY seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED
      )
      RETURNING command_uuid, command
    )
    SELECT (SELECT count(*) FROM stored)::int AS stored, (SELECT count(*) FROM target)::int AS known, next.command_uuid, next.command
    FROM (SELECT 1) one LEFT JOIN next ON true`,
}

export async function storeResult(
  sql: Sql,
  mdmChannelId: string,
  commandUuid: string,
  status: FinalStatus,
  result: Prisma.InputJsonValue,
  now: Date,
  takeNext: boolean,
): Promise<{ outcome: ReportOutcome; next: { commandUuid: string; command: unknown } | null }> {
  const [row] = await sql.query<{ stored: number; known: number; command_uuid: string | null; command: unknown }>(STORE_RESULT, [mdmChannelId, commandUuid, status, JSON.stringify(result), now, takeNext])
  const outcome = row!.stored === 1 ? 'stored' : row!.known ? 'duplicate' : 'unknown'
  return { outcome, next: row!.command_uuid ? { commandUuid: row!.command_uuid, command: row!.command } : null }
}

/** NotNow: the command waits for the channel's next Idle. */
export async function putAside(db: Db, mdmChannelId: string, commandUuid: string, now: Date): Promise<ReportOutcome> {
  const { count } = await db.mdmCommand.updateMany({
    where: { commandUuid, mdmChannelId, status: { in: ['pending', 'sent', 'not_now'] } },
    data: { status: 'not_now', notNowAt: now },
  })
  if (count === 1) return 'stored'
  return (await db.mdmCommand.count({ where: { commandUuid, mdmChannelId } })) ? 'duplicate' : 'unknown'
}

export function findCommand(db: Db, commandUuid: string) {
  return db.mdmCommand.findUnique({ where: { commandUuid }, include: { channel: { select: { channelId: true } } } })
}

/** Cancels a command that was not sent yet (pending, or put aside by NotNow); null when it cannot be. */
export async function cancelCommand(db: Db, commandUuid: string, now: Date): Promise<boolean> {
  const { count } = await db.mdmCommand.updateMany({ where: { commandUuid, status: { in: ['pending', 'not_now'] } }, data: { status: 'cancelled', cancelledAt: now } })
  return count === 1
}

export interface CommandFilter {
  mdmEnrollmentId?: string
  status?: CommandStatus
  requestType?: string
}

/** Newest first, after `after` (keyset on created_at, id). */
export function listCommands(db: Db, filter: CommandFilter, limit: number, after?: { createdAt: Date; id: string }) {
  return db.mdmCommand.findMany({
    where: {
      ...(filter.mdmEnrollmentId ? { mdmEnrollmentId: filter.mdmEnrollmentId } : {}),
      ...(filter.status ? { status: filter.status } : {}),
      ...(filter.requestType ? { requestType: filter.requestType } : {}),
      ...(after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {}),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: limit,
    include: { channel: { select: { channelId: true } } },
  })
}
