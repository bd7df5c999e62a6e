/**
 * `/api/v1/admin/users` through the real app and database: list and filter, read with enrollments and
 * tokens, revoke (the device's next check-in with a bearer token gets exactly the enroll challenge, a
 * Mac's device channel is answered 200, sign-in is refused, grants are revoked) and reactivate (a fresh
 * sign-in works again, the old tokens stay revoked).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mintAccessToken } from '../../../src/services/tokens.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, type Device } from '../../helpers/device.js'
import { postEnroll, signIn } from '../../helpers/enroll.js'
import { tokenFrom } from '../../helpers/sso.js'

const ADMIN_TOKEN = 'users-admin-token-0123456789abcdef0123456789'
const UNKNOWN_ID = '6f1c1d4e-2a3b-4c5d-8e9f-0a1b2c3d4e5f'

let t: TestApp
/** What the enroll endpoint answers without a token: check-in must repeat it exactly. */
let challenge: string
/** Every access token handed out here: none may reach a log line. */
const secrets: string[] = []

beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
  const res = await postEnroll(t.app)
  expect(res.statusCode).toBe(401)
  challenge = res.headers['www-authenticate'] as string
})
afterAll(async () => {
  const all = t.logLines.join('\n')
  for (const secret of secrets) expect(all).not.toContain(secret)
  await t?.close()
})

type Json = Record<string, unknown>
interface UserJson {
  id: string
  email: string | null
  active: boolean
  [key: string]: unknown
}
interface UserDetailsJson extends UserJson {
  enrollments: { id: string; team_id: string; status: string; product_name: string | null; last_seen_at: string; created_at: string }[]
  enrollment_count: number
  tokens: { usable: number; revoked: number; last_sign_in_at: string | null }
}

const api = (method: 'GET' | 'POST', url: string) => t.app.inject({ method, url: `/api/v1/admin${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
const prisma = () => t.app.db.prisma
const auditLines = (action: string, userId: string) => t.logs().filter((l) => l.msg === `admin: ${action}` && (l.admin as Json).userId === userId)

async function device(options: { mac?: boolean } = {}): Promise<Device> {
  const d = await activeDevice(t.app, options)
  secrets.push(d.user.token)
  return d
}

async function revoke(userId: string): Promise<{ user: UserDetailsJson; revoked: { access_tokens: number; oauth2_grants: number } }> {
  const res = await api('POST', `/users/${userId}/revoke`)
  expect(res.statusCode, res.body).toBe(200)
  return res.json()
}

async function reactivate(userId: string): Promise<UserDetailsJson> {
  const res = await api('POST', `/users/${userId}/reactivate`)
  expect(res.statusCode, res.body).toBe(200)
  return (res.json() as { user: UserDetailsJson }).user
}

/** A new interactive sign-in of the same user: a brand new token of theirs. */
async function signInAgain(userId: string): Promise<string> {
  const minted = await mintAccessToken(prisma(), { userId, teamId: t.app.defaultTeam.id, method: 'saml', windowSeconds: 3600 })
  secrets.push(minted.token)
  return minted.token
}

/** The re-authentication answer: 401, exactly the enroll endpoint's challenge, no body. */
function expectReauthentication(res: { statusCode: number; body: string; headers: Record<string, unknown> }) {
  expect(res.statusCode, res.body).toBe(401)
  expect(res.headers['www-authenticate']).toBe(challenge)
  expect(res.body).toBe('')
}

describe('list and read', () => {
  it('lists users with their fields, filters by email ignoring case and without wildcards', async () => {
    const alice = await signIn(t.app, { email: 'Alice.Admin@Example.com' })
    const underscore = await signIn(t.app, { email: 'a_b@example.com' })
    await signIn(t.app, { email: 'axb@example.com' })
    const find = async (email: string) => {
      const res = await api('GET', `/users?${new URLSearchParams({ email })}`)
      expect(res.statusCode, res.body).toBe(200)
      return (res.json() as { items: UserJson[]; next_cursor: string | null }).items
    }
    const [found, ...rest] = await find('alice.admin@example.COM')
    expect(rest).toEqual([])
    const row = await prisma().user.findUniqueOrThrow({ where: { id: alice.userId } })
    expect(found).toEqual({
      id: row.id,
      issuer: row.issuer,
      subject: row.subject,
      email: 'Alice.Admin@Example.com',
      display_name: row.displayName,
      groups: [],
      active: true,
      created_at: row.createdAt.toISOString(),
      updated_at: row.updatedAt.toISOString(),
    })
    expect((await find('a_b@example.com')).map((u) => u.id)).toEqual([underscore.userId])
    expect(await find('a%')).toEqual([])
    expect(await find('nobody@example.com')).toEqual([])
  })

  it('walks every user exactly once across pages', async () => {
    for (let i = 0; i < 5; i++) await signIn(t.app)
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const body = (await api('GET', `/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json() as { items: UserJson[]; next_cursor: string | null }
      seen.push(...body.items.map((u) => u.id))
      cursor = body.next_cursor
      pages++
    } while (cursor && pages < 100)
    expect(seen.sort()).toEqual((await prisma().user.findMany({ select: { id: true } })).map((u) => u.id).sort())
    expect(new Set(seen).size).toBe(seen.length)
  })

  it('reads a user with their enrollments and tokens', async () => {
    const d = await device()
    const res = await api('GET', `/users/${d.user.userId}`)
    expect(res.statusCode, res.body).toBe(200)
    const user = res.json() as UserDetailsJson
    const enrollment = await prisma().mdmEnrollment.findFirstOrThrow({ where: { userId: d.user.userId } })
    expect(user).toMatchObject({ id: d.user.userId, active: true, enrollment_count: 1, tokens: { usable: 1, revoked: 0 } })
    expect(user.enrollments).toEqual([
      {
        id: enrollment.id,
        team_id: t.app.defaultTeam.id,
        status: 'active',
        product_name: enrollment.productName,
        last_seen_at: enrollment.lastSeenAt.toISOString(),
        created_at: enrollment.createdAt.toISOString(),
      },
    ])
    expect(user.tokens.last_sign_in_at).toBe((await prisma().accessToken.findUniqueOrThrow({ where: { id: d.user.tokenId } })).createdAt.toISOString())
  })

  it('refuses an unknown parameter and control characters in the filter', async () => {
    expect((await api('GET', '/users?emial=a@example.com')).statusCode).toBe(400)
    const res = await api('GET', '/users?email=a%00@example.com')
    expect(res.statusCode).toBe(400)
    expect(res.json()).toEqual({ error: 'invalid_request', message: expect.stringMatching(/control characters/) })
  })
})

describe('revoke', () => {
  it("deactivates the user, revokes every token and grant, and the device's next Idle with a bearer gets the enroll challenge", async () => {
    const d = await device()
    const userId = d.user.userId
    const grant = await prisma().oAuth2Grant.create({ data: { userId, teamId: t.app.defaultTeam.id } })
    const other = await signIn(t.app)
    expect((await d.idle()).statusCode).toBe(200)

    const first = await revoke(userId)
    expect(first.revoked).toEqual({ access_tokens: 1, oauth2_grants: 1 })
    expect(first.user).toMatchObject({ id: userId, active: false, tokens: { usable: 0, revoked: 1 } })
    expect(await prisma().user.findUniqueOrThrow({ where: { id: userId } })).toMatchObject({ active: false })
    expect(await prisma().accessToken.count({ where: { userId, revokedAt: null } })).toBe(0)
    expect(await prisma().oAuth2Grant.findUniqueOrThrow({ where: { id: grant.id } })).toMatchObject({ revokedReason: 'admin_revoked', revokedAt: expect.any(Date) })
    // Nobody else is touched.
    expect(await prisma().accessToken.findUniqueOrThrow({ where: { id: other.tokenId } })).toMatchObject({ revokedAt: null })

    expectReauthentication(await d.idle())
    expect((await postEnroll(t.app, { token: d.user.token })).statusCode).toBe(401)

    const [line] = auditLines('user.revoke', userId)
    expect(line?.admin).toEqual({ action: 'user.revoke', userId, wasActive: true, revokedAccessTokens: 1, revokedGrants: 1 })
    expect(JSON.stringify(line)).not.toContain(d.user.token)

    // Revoking again is harmless and says nothing was left.
    const second = await revoke(userId)
    expect(second.revoked).toEqual({ access_tokens: 0, oauth2_grants: 0 })
    expect(second.user.active).toBe(false)
    expect(auditLines('user.revoke', userId).map((l) => (l.admin as Json).wasActive)).toEqual([true, false])
  })

  it('answers a Mac device-channel Idle without a token with 200 and no body, never 401', async () => {
    const d = await device({ mac: true })
    await revoke(d.user.userId)
    const res = await d.idle({ token: null })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.body).toBe('')
    expect(res.headers['www-authenticate']).toBeUndefined()
  })
})

describe('reactivate', () => {
  it('lets the user sign in again; the revoked tokens stay revoked until then', async () => {
    const d = await device()
    await revoke(d.user.userId)
    const user = await reactivate(d.user.userId)
    expect(user).toMatchObject({ id: d.user.userId, active: true, tokens: { usable: 0, revoked: 1 } })
    expect(auditLines('user.reactivate', d.user.userId).map((l) => l.admin)).toEqual([{ action: 'user.reactivate', userId: d.user.userId, wasActive: false }])

    expectReauthentication(await d.idle())
    d.token = await signInAgain(d.user.userId)
    expect((await d.idle()).statusCode).toBe(200)
  })

  it('refuses the development sign-in of a revoked user, and accepts it again after reactivation', async () => {
    const email = 'Dev.User@example.test'
    const devSignIn = () =>
      t.app.inject({
        method: 'POST',
        url: '/api/v1/mdm/sso/dev',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ enrollmentToken: t.app.defaultTeam.enrollmentToken, email }).toString(),
      })
    secrets.push(tokenFrom(await devSignIn()))
    const found = (await api('GET', `/users?email=${encodeURIComponent('dev.user@EXAMPLE.test')}`)).json() as { items: UserJson[] }
    expect(found.items).toHaveLength(1)
    const userId = found.items[0]!.id
    expect(found.items[0]).toMatchObject({ issuer: 'dev', email })

    await revoke(userId)
    const tokens = await prisma().accessToken.count()
    const refused = await devSignIn()
    expect(refused.statusCode).toBe(403)
    expect(refused.body).toContain('disabled')
    expect(await prisma().accessToken.count()).toBe(tokens)

    await reactivate(userId)
    const token = tokenFrom(await devSignIn())
    secrets.push(token)
    // The fresh sign-in's token fetches an enrollment profile.
    expect((await postEnroll(t.app, { token })).statusCode).toBe(200)
  })
})

describe('refusals, authentication and documentation', () => {
  it('answers 404 for an unknown user and 400 for a malformed id, writing nothing', async () => {
    const before = await prisma().user.findMany({ orderBy: { id: 'asc' } })
    for (const [method, path] of [
      ['GET', ''],
      ['POST', '/revoke'],
      ['POST', '/reactivate'],
    ] as const) {
      const unknown = await api(method, `/users/${UNKNOWN_ID}${path}`)
      expect(unknown.statusCode, `${method} ${path}`).toBe(404)
      expect(unknown.json()).toEqual({ error: 'not_found', message: 'No user has this id' })
      const malformed = await api(method, `/users/12345${path}`)
      expect(malformed.statusCode).toBe(400)
      expect(malformed.json()).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/id/) })
    }
    expect(await prisma().user.findMany({ orderBy: { id: 'asc' } })).toEqual(before)
  })

  it('answers 401 on every users endpoint without the admin token, and changes nothing', async () => {
    const { userId } = await signIn(t.app)
    for (const [method, url] of [
      ['GET', '/users'],
      ['GET', `/users/${userId}`],
      ['POST', `/users/${userId}/revoke`],
      ['POST', `/users/${userId}/reactivate`],
    ] as const) {
      const res = await t.app.inject({ method, url: `/api/v1/admin${url}`, headers: { authorization: 'Bearer not-the-admin-token' } })
      expect(res.statusCode, `${method} ${url}`).toBe(401)
      expect((await t.app.inject({ method, url: `/api/v1/admin${url}` })).statusCode).toBe(401)
    }
    expect(await prisma().user.findUniqueOrThrow({ where: { id: userId } })).toMatchObject({ active: true })
    expect(await prisma().accessToken.count({ where: { userId, revokedAt: { not: null } } })).toBe(0)
  })

  it('lists the users paths in the OpenAPI document with their schemas', async () => {
    const spec = (await t.app.inject('/api/v1/openapi.json')).json() as { paths: Record<string, Record<string, Json>> }
    const schemaOf = (op: Json) => ((op.responses as Json)['200'] as { content: { 'application/json': { schema: { properties: Json } } } }).content['application/json'].schema
    expect(Object.keys(spec.paths['/api/v1/admin/users']!)).toEqual(['get'])
    expect(Object.keys(spec.paths['/api/v1/admin/users/{id}']!)).toEqual(['get'])
    const list = spec.paths['/api/v1/admin/users']!.get!
    expect((list.parameters as { name: string }[]).map((p) => p.name).sort()).toEqual(['cursor', 'email', 'limit'])
    const details = schemaOf(spec.paths['/api/v1/admin/users/{id}']!.get!)
    expect(Object.keys(details.properties)).toEqual(
      expect.arrayContaining(['id', 'issuer', 'subject', 'email', 'display_name', 'groups', 'active', 'created_at', 'updated_at', 'enrollments', 'enrollment_count', 'tokens']),
    )
    const revokeOp = spec.paths['/api/v1/admin/users/{id}/revoke']!.post!
    expect(Object.keys(schemaOf(revokeOp).properties).sort()).toEqual(['revoked', 'user'])
    expect(revokeOp.description).toMatch(/401/)
    expect(Object.keys(schemaOf(spec.paths['/api/v1/admin/users/{id}/reactivate']!.post!).properties)).toEqual(['user'])
  })
})
