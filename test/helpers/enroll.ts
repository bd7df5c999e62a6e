/** Shared by the enrollment tests: sign-in is other issues' work, so tests mint tokens directly. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { App } from '../../src/app.js'
import type { Team } from '../../src/generated/prisma/client.js'
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js'
import { mintAccessToken, upsertUser } from '../../src/services/tokens.js'
import { fixtureBase64 } from './fixtures.js'

/** The body an iPhone12,1 on iOS 15.7 POSTed to the enroll URL (test/fixtures/README.md). */
export const enrollBody = fixtureBase64('enroll-body.iphone12-1.ios15.b64')

let n = 0

/** A user signed in at the IdP and the access token sign-in would hand the device. */
export async function signIn(
  app: App,
  options: { email?: string | null; userIdentifier?: string | null; team?: Team; windowSeconds?: number } = {},
): Promise<{ token: string; tokenId: string; userId: string }> {
  const prisma = app.db.prisma
  const subject = `user-${process.pid}-${++n}`
  const email = options.email === undefined ? `${subject}@example.com` : options.email
  const user = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject, email, displayName: subject })
  const minted = await mintAccessToken(prisma, {
    userId: user.id,
    teamId: (options.team ?? app.defaultTeam).id,
    method: 'saml',
    userIdentifier: options.userIdentifier ?? null,
    windowSeconds: options.windowSeconds ?? 3600,
  })
  return { token: minted.token, tokenId: minted.record.id, userId: user.id }
}

export function postEnroll(app: App, options: { body?: Buffer | string; token?: string; path?: string; contentType?: string | null } = {}) {
  const headers: Record<string, string> = {}
  if (options.contentType !== null) headers['content-type'] = options.contentType ?? 'application/pkcs7-signature'
  if (options.token) headers.authorization = `Bearer ${options.token}`
  return app.inject({ method: 'POST', url: options.path ?? '/api/mdm/apple/enroll', headers, payload: options.body ?? enrollBody })
}

/** Rows that an enroll request may write; "nothing written" means these do not change. */
export async function writtenRows(app: App) {
  const prisma = app.db.prisma
  return {
    profiles: await prisma.enrollmentProfile.count(),
    challenges: await prisma.scepChallenge.count(),
    consumedTokens: await prisma.accessToken.count({ where: { profileIssuedAt: { not: null } } }),
  }
}

const tmp = mkdtempSync(path.join(tmpdir(), 'enroll-test-'))
let files = 0

/** `openssl cms -verify` of a signed profile against the server's signing certificate; returns the plist. */
export function verifyProfile(app: App, signed: Buffer): PlistDict {
  const file = path.join(tmp, `profile-${++files}.der`)
  const signer = path.join(tmp, `signer-${files}.pem`)
  writeFileSync(file, signed)
  writeFileSync(signer, app.keys.profileSigner.certificate.toString())
  const out = execFileSync('openssl', ['cms', '-verify', '-inform', 'DER', '-in', file, '-CAfile', signer, '-purpose', 'any'], { stdio: ['ignore', 'pipe', 'pipe'] })
  return parsePlistDict(out)
}

/** The one payload of `type` in a profile. */
export function payloadOf(profile: PlistDict, type: string): PlistDict {
  const found = (profile.PayloadContent as PlistDict[]).filter((p) => p.PayloadType === type)
  if (found.length !== 1) throw new Error(`expected one ${type} payload, found ${found.length}`)
  return found[0]!
}
