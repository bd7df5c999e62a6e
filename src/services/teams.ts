import { randomBytes } from 'node:crypto'
import type { PrismaClient, Team } from '../generated/prisma/client.js'

/** 192 random bits, URL-safe: the per-team path segment of enroll, SSO and token URLs. */
export function newEnrollmentToken(): string {
  return randomBytes(24).toString('base64url')
}

/** Creates the Default team on first start; safe when several processes start at once. */
export async function ensureDefaultTeam(prisma: PrismaClient): Promise<Team> {
  const existing = await prisma.team.findFirst({ where: { isDefault: true } })
  if (existing) return existing
  // ON CONFLICT DO NOTHING against the partial unique index on is_default: one insert wins.
  await prisma.team.createMany({ data: [{ name: 'Default', enrollmentToken: newEnrollmentToken(), isDefault: true }], skipDuplicates: true })
  return prisma.team.findFirstOrThrow({ where: { isDefault: true } })
}

export async function findTeamByEnrollmentToken(prisma: PrismaClient, token: string): Promise<Team | null> {
  // Tokens are base64url; anything else cannot match and need not reach the database.
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(token)) return null
  return prisma.team.findUnique({ where: { enrollmentToken: token } })
}

/**
 * The team with this name, created when missing (ENROLL_DOMAINS names teams). Names are not unique in
 * the schema, so creation runs under a transaction-scoped advisory lock: processes starting together
 * create one team, and every later lookup finds the oldest team of that name.
 */
export async function ensureTeamNamed(prisma: PrismaClient, name: string): Promise<Team> {
  const oldest = { where: { name }, orderBy: [{ createdAt: 'asc' as const }, { id: 'asc' as const }] }
  const existing = await prisma.team.findFirst(oldest)
  if (existing) return existing
  return prisma.$transaction(async (tx) => {
    await tx.$executeRawUnsafe("SELECT pg_advisory_xact_lock(hashtext('byod-mdm:teams-by-name'))")
    return (await tx.team.findFirst(oldest)) ?? tx.team.create({ data: { name, enrollmentToken: newEnrollmentToken() } })
  })
}
