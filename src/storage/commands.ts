/**
 * The command queue (table mdm_commands): one row per command per channel, first in first out by `seq`.
 * The next command is taken and marked sent in one statement that skips rows another request holds, so
 * concurrent requests (two server processes) never take one command at the same moment; a command sent and
 * not reported on is sent again when the channel's next session starts (Idle), so none is lost. Results
 * are written once: a report for a command that already ended changes nothing (devices resend).
 */
import type { Prisma } from '../generated/prisma/client.js'
import { batchedPerDatabase } from './batch.js'
import type { Client, Db, Sql } from './database.js'
import type { MdmCommand } from './types.js'

export type CommandStatus = 'pending' | 'sent' | 'not_now' | 'acknowledged' | 'error' | 'format_error' | 'cancelled'
/**
 * Statuses in which a command still waits for the device: exactly those with no completed_at and no
 * cancelled_at (constraint mdm_commands_open_check), which is how the queue index and the statements
 * here say "open", so that handing a command out and NotNow touch no index.
 */
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
        AND completed_at IS NULL AND cancelled_at IS NULL
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
const STORE_RESULTS = {
  name: 'mdm_store_results',
  text: `WITH k AS (
      SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::boolean[])
        WITH ORDINALITY AS k(channel, command_uuid, status, result, at, take_next, i)
    ),
    target AS (SELECT k.i, m.id, m.seq FROM k JOIN mdm_commands m ON m.command_uuid = k.command_uuid AND m.mdm_channel_id = k.channel),
    stored AS (
      UPDATE mdm_commands m SET status = k.status, result = k.result::jsonb, completed_at = k.at
      FROM target JOIN k ON k.i = target.i
      WHERE m.id = target.id AND m.status NOT IN ('acknowledged', 'error', 'format_error')
      RETURNING target.i
    ),
    due AS (
      SELECT k.i, k.at, (
        SELECT id FROM mdm_commands
        WHERE mdm_channel_id = k.channel
          AND completed_at IS NULL AND cancelled_at IS NULL
          AND status = 'pending'
          AND seq > coalesce(target.seq, 0)
          AND (expires_at IS NULL OR expires_at > k.at)
        ORDER BY seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED
      ) AS id
      FROM k LEFT JOIN target ON target.i = k.i
      WHERE k.take_next
    ),
    next AS (
      UPDATE mdm_commands m SET status = 'sent', sent_at = due.at, deliveries = m.deliveries + 1
      FROM due WHERE m.id = due.id
      RETURNING due.i, m.command_uuid, m.command
    )
    SELECT k.i, EXISTS (SELECT 1 FROM stored WHERE stored.i = k.i) AS stored, EXISTS (SELECT 1 FROM target WHERE target.i = k.i) AS known, next.command_uuid, next.command
    FROM k LEFT JOIN next ON next.i = k.i
    ORDER BY k.i`,
}

interface ResultKey {
  channelId: string
  commandUuid: string
  status: FinalStatus
  result: string
  now: Date
  takeNext: boolean
}
type Stored = { outcome: ReportOutcome; next: { commandUuid: string; command: unknown } | null }

/**
 * A report's body is up to MDM_BODY_LIMIT (1 MiB): a statement carries at most 4 MiB of results (the
 * length of their JSON; a larger one goes alone), so that a burst of large reports (application lists)
 * is not one statement of 100 MiB.
 */
const storeBatched = batchedPerDatabase(storeResults, { weight: { of: (key) => key.result.length, max: 4 * 1024 * 1024 } })

export function storeResult(
  sql: Sql,
  mdmChannelId: string,
  commandUuid: string,
  status: FinalStatus,
  result: Prisma.InputJsonValue,
  now: Date,
  takeNext: boolean,
): Promise<Stored> {
  return storeBatched(sql, { channelId: mdmChannelId, commandUuid, status, result: JSON.stringify(result), now, takeNext })
}

/**
 * Stores the results of many reports in one statement and one commit. Two reports on one channel never
 * share a statement: one statement cannot update a row twice (the second report's result and the first
 * one's next command could be the same row), so they go in rounds. A deadlock with another server
 * process's statement rolls the whole statement back; its reports are then stored one by one.
 */
async function storeResults(sql: Sql, keys: ResultKey[]): Promise<Stored[]> {
  const rounds: { keys: ResultKey[]; at: number[] }[] = []
  keys.forEach((key, at) => {
    let round = rounds.find((r) => !r.keys.some((k) => k.channelId === key.channelId))
    if (!round) rounds.push((round = { keys: [], at: [] }))
    round.keys.push(key)
    round.at.push(at)
  })
  const out: Stored[] = new Array(keys.length)
  for (const round of rounds) {
    let stored: Stored[]
    try {
      stored = await storeRound(sql, round.keys)
    } catch (err) {
      if (round.keys.length === 1 || !isTransactionRollback(err)) throw err
      stored = []
      for (const key of round.keys) stored.push(...(await storeRound(sql, [key])))
    }
    round.at.forEach((at, j) => (out[at] = stored[j]!))
  }
  return out
}

async function storeRound(sql: Sql, keys: ResultKey[]): Promise<Stored[]> {
  const rows = await sql.query<{ stored: boolean; known: boolean; command_uuid: string | null; command: unknown }>(STORE_RESULTS, [
    keys.map((k) => k.channelId),
    keys.map((k) => k.commandUuid),
    keys.map((k) => k.status),
    keys.map((k) => k.result),
    keys.map((k) => k.now),
    keys.map((k) => k.takeNext),
  ])
  if (rows.length !== keys.length) throw new Error(`${keys.length} results stored, ${rows.length} answers`)
  return rows.map((row) => ({
    outcome: row.stored ? 'stored' : row.known ? 'duplicate' : 'unknown',
    next: row.command_uuid ? { commandUuid: row.command_uuid, command: row.command } : null,
  }))
}

/** Postgres's class 40 (deadlock, serialization failure): the statement was rolled back and may be retried. */
function isTransactionRollback(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('40')
}

/** NotNow: the command waits for the channel's next Idle. */
export async function putAside(db: Db, mdmChannelId: string, commandUuid: string, now: Date): Promise<ReportOutcome> {
  const { count } = await db.mdmCommand.updateMany({
    where: { commandUuid, mdmChannelId, status: { in: [...OPEN_STATUSES] } },
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
