/**
 * Declarative management state: the declarations an administrator assigned to a team, the team's own
 * Enrollment SSO settings, the token of the team's declaration set as last served, and each channel's
 * latest status report.
 */
import { Prisma } from '../generated/prisma/client.js'
import type { Client, Db } from './database.js'
import type { TeamDeclaration } from './types.js'

export function teamDeclarations(db: Db, teamId: string): Promise<TeamDeclaration[]> {
  return db.teamDeclaration.findMany({ where: { teamId }, orderBy: { identifier: 'asc' } })
}

export interface DeclarationRow {
  identifier: string
  type: string
  serverToken: string
  payload: Prisma.InputJsonValue
}

/** Creates or replaces the team's declaration with this identifier. */
export function putTeamDeclaration(db: Db, teamId: string, d: DeclarationRow, now: Date): Promise<TeamDeclaration> {
  return db.teamDeclaration.upsert({
    where: { teamId_identifier: { teamId, identifier: d.identifier } },
    create: { teamId, ...d, createdAt: now, updatedAt: now },
    update: { type: d.type, serverToken: d.serverToken, payload: d.payload, updatedAt: now },
  })
}

/** True when there was one to delete. */
export async function deleteTeamDeclaration(db: Db, teamId: string, identifier: string): Promise<boolean> {
  const { count } = await db.teamDeclaration.deleteMany({ where: { teamId, identifier } })
  return count === 1
}

/** The team's own ESSO settings (null: the server's). */
export function setTeamEssoSettings(db: Db, teamId: string, settings: object | null) {
  return db.team.update({ where: { id: teamId }, data: { essoSettings: settings === null ? Prisma.DbNull : (settings as Prisma.InputJsonValue) } })
}

/**
 * Records that the team's declaration set now has `token`, when it differs from the one stored: true when
 * it changed (the caller then tells the team's enrollments). Under the team's row lock, so that of two
 * processes noticing one change, one acts on it.
 */
export async function recordDeclarationsToken(db: Client, teamId: string, token: string, now: Date): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const rows = await tx.$queryRaw<{ declarations_token: string | null }[]>`SELECT declarations_token FROM teams WHERE id = ${teamId}::uuid FOR UPDATE`
    if (!rows[0] || rows[0].declarations_token === token) return false
    await tx.team.update({ where: { id: teamId }, data: { declarationsToken: token, declarationsChangedAt: now } })
    return true
  })
}

/** Enrollments of the team still in use (authenticated or active), for telling them about a change. */
export async function liveEnrollmentIdsOfTeam(db: Db, teamId: string): Promise<string[]> {
  const rows = await db.mdmEnrollment.findMany({ where: { teamId, status: { in: ['authenticated', 'active'] } }, select: { id: true } })
  return rows.map((r) => r.id)
}

export async function storeDdmStatus(db: Db, mdmChannelId: string, status: Prisma.InputJsonValue, now: Date): Promise<void> {
  await db.mdmChannel.update({ where: { id: mdmChannelId }, data: { ddmStatus: status, ddmStatusAt: now } })
}
