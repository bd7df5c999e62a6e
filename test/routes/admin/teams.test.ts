/**
 * `/api/v1/admin/teams` through the real app and database: create, list (every team once across pages),
 * read, rename, sign-in method (refused when the server cannot serve it, visible in the enroll
 * challenge), token rotation (the old enroll URL is gone, the new one challenges), the discovery JSON a
 * device would get, refusals that write nothing, and the OpenAPI document.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newEnrollmentToken } from '../../../src/storage/teams.js'
import { buildTestApp, TEST_SERVER_URL, type TestApp } from '../../helpers/app.js'
import { postEnroll } from '../../helpers/enroll.js'
import { APPLE_REDIRECT_URI, startTestIdp, type TestIdp } from '../../helpers/oidc-idp.js'
import { oauth2Env } from '../../helpers/oauth2.js'

const ADMIN_TOKEN = 'teams-admin-token-0123456789abcdef0123456789'
/** Tests that build another server (PGlite, keys) get room on a busy machine. */
const BUILDS_AN_APP = 120_000

let t: TestApp
beforeAll(async () => {
  // example.org goes to a team created by name at start, so discovery is checked for a team that is not the Default one.
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ENROLL_DOMAINS: 'example.com, example.org=Contractors' } })
})
afterAll(async () => t?.close())

type Json = Record<string, unknown>
interface TeamJson {
  id: string
  name: string
  is_default: boolean
  auth_method: 'saml' | 'oauth2' | null
  effective_auth_method: 'saml' | 'oauth2'
  enrollment_token: string
  enroll_url: string
  discovery: { Servers: { Version: string; BaseURL: string }[] }
  created_at: string
}

function admin(app: TestApp['app'], method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) {
  return app.inject({
    method,
    url: `/api/v1/admin${url}`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    ...(payload === undefined ? {} : typeof payload === 'string' ? { payload, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' } } : { payload: payload as Json }),
  })
}
const api = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) => admin(t.app, method, url, payload)

async function create(name: string, authMethod?: 'saml' | 'oauth2' | null, app = t.app): Promise<TeamJson> {
  const res = await admin(app, 'POST', '/teams', authMethod === undefined ? { name } : { name, auth_method: authMethod })
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as TeamJson
}

const enrollPath = (token: string) => `/api/mdm/apple/enroll/${token}`
const asWeb = (token: string) => `Bearer method="apple-as-web", url="${TEST_SERVER_URL}/mdm/sso/${token}"`
const teamRows = () => t.app.db.prisma.team.findMany({ orderBy: { id: 'asc' } })
const auditLines = (action: string) => t.logs().filter((l) => l.msg === `admin: ${action}`)

/** A refusal: the status, `{error, message}` with the message matching, and no team written. */
async function refused(send: () => Promise<{ statusCode: number; json(): unknown; body: string }>, status: number, message: RegExp) {
  const before = await teamRows()
  const res = await send()
  expect(res.statusCode, res.body).toBe(status)
  const body = res.json() as { error: string; message: string }
  expect(Object.keys(body).sort()).toEqual(['error', 'message'])
  expect(body.message).toMatch(message)
  expect(await teamRows()).toEqual(before)
  return body
}

describe('create and read', () => {
  it('creates a team with its own token, enroll URL and discovery answer, and logs it without the token', async () => {
    const team = await create('  Engineering  ')
    expect(team).toMatchObject({ name: 'Engineering', is_default: false, auth_method: null, effective_auth_method: 'saml' })
    expect(team.enrollment_token).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(team.enroll_url).toBe(`${TEST_SERVER_URL}/api/mdm/apple/enroll/${team.enrollment_token}`)
    expect(team.discovery).toEqual({ Servers: [{ Version: 'mdm-byod', BaseURL: team.enroll_url }] })
    expect(new Date(team.created_at).toISOString()).toBe(team.created_at)

    // White space around the name goes before the length is counted.
    expect((await create(`\t${'x'.repeat(200)} \n`)).name).toBe('x'.repeat(200))

    const row = await t.app.db.prisma.team.findUniqueOrThrow({ where: { id: team.id } })
    expect(row).toMatchObject({ name: 'Engineering', enrollmentToken: team.enrollment_token, authMethod: null, isDefault: false })
    const read = await api('GET', `/teams/${team.id}`)
    expect(read.statusCode).toBe(200)
    expect(read.json()).toEqual(team)

    // The new team's enroll URL challenges like any other.
    const enroll = await postEnroll(t.app, { path: enrollPath(team.enrollment_token) })
    expect(enroll.statusCode).toBe(401)
    expect(enroll.headers['www-authenticate']).toBe(asWeb(team.enrollment_token))

    const line = auditLines('team.create').find((l) => (l.admin as Json).teamId === team.id)
    expect(line?.admin).toEqual({ action: 'team.create', teamId: team.id, name: 'Engineering', authMethod: null, enrollmentType: 'user' })
    expect(JSON.stringify(line)).not.toContain(team.enrollment_token)
  })

  it('reads the Default team and the ENROLL_DOMAINS team with exactly the discovery JSON devices get', async () => {
    const list = (await api('GET', '/teams?limit=500')).json() as { items: TeamJson[] }
    const byName = (name: string) => list.items.find((x) => x.name === name)!
    for (const [team, identifier] of [
      [list.items.find((x) => x.is_default)!, 'alice@example.com'],
      [byName('Contractors'), 'bob@Example.ORG'],
    ] as const) {
      const res = await t.app.inject(`/.well-known/com.apple.remotemanagement?${new URLSearchParams({ 'user-identifier': identifier, 'model-family': 'iPhone' })}`)
      expect(res.statusCode).toBe(200)
      expect(team.discovery).toEqual(res.json())
    }
    expect(list.items.filter((x) => x.is_default)).toHaveLength(1)
  })

  it('answers 404 for an unknown id and 400 for a malformed one', async () => {
    await refused(() => api('GET', '/teams/6f1c1d4e-2a3b-4c5d-8e9f-0a1b2c3d4e5f'), 404, /No team/)
    const bad = await refused(() => api('GET', '/teams/not-a-uuid'), 400, /id/)
    expect(bad.error).toBe('invalid_request')
  })
})

describe('list', () => {
  it('walks every team exactly once, newest first, across pages of `limit`', async () => {
    for (let i = 0; i < 7; i++) await create(`Paged ${i}`)
    // Rows of one millisecond: the id breaks the tie, and a page boundary may fall between them.
    const at = new Date()
    await t.app.db.prisma.team.createMany({ data: [0, 1, 2, 3, 4].map((i) => ({ name: `Same instant ${i}`, enrollmentToken: newEnrollmentToken(), createdAt: at })) })
    const seen: TeamJson[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await api('GET', `/teams?limit=3${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.statusCode, res.body).toBe(200)
      const body = res.json() as { items: TeamJson[]; next_cursor: string | null }
      expect(body.items.length).toBeLessThanOrEqual(3)
      seen.push(...body.items)
      cursor = body.next_cursor
      pages++
    } while (cursor && pages < 50)
    const rows = await teamRows()
    expect(seen.map((x) => x.id).sort()).toEqual(rows.map((r) => r.id).sort())
    expect(new Set(seen.map((x) => x.id)).size).toBe(seen.length)
    const keys = seen.map((x) => [x.created_at, x.id].join(' '))
    expect(keys).toEqual([...keys].sort().reverse())
  })

  it('filters by name, ignoring case, with no wildcards', async () => {
    const eu = await create('Sales_EU')
    await create('SalesXEU')
    const find = async (name: string) => ((await api('GET', `/teams?${new URLSearchParams({ name })}`)).json() as { items: TeamJson[] }).items.map((x) => x.id)
    expect(await find('sales_eu')).toEqual([eu.id])
    expect(await find('Sales%')).toEqual([])
    expect(await find('nobody')).toEqual([])
  })

  it('refuses a cursor it did not hand out, a bad limit, an unknown parameter and control characters', async () => {
    await refused(() => api('GET', '/teams?cursor=bm90IGEgY3Vyc29y'), 400, /cursor/)
    await refused(() => api('GET', '/teams?limit=0'), 400, /limit/)
    await refused(() => api('GET', '/teams?limit=501'), 400, /limit/)
    await refused(() => api('GET', '/teams?nmae=x'), 400, /nmae/)
    await refused(() => api('GET', '/teams?name=a%00b'), 400, /control characters/)
  })
})

describe('refusals write nothing', () => {
  it('refuses invalid bodies with the validation message', async () => {
    const cases: [unknown, RegExp][] = [
      [{ name: '' }, /name/],
      [{ name: '   ' }, /name/],
      [{ name: 'x'.repeat(201) }, /name/],
      [{ name: 'two\nlines' }, /control characters/],
      [{ name: 'nul\u0000' }, /control characters/],
      [{ name: 'lone \ud800 surrogate' }, /control characters/],
      [{ name: 'Kerberos', auth_method: 'kerberos' }, /auth_method/],
      [{ name: 'Extra', colour: 'blue' }, /colour/],
      [{}, /name/],
      [{ name: 42 }, /name/],
      ['{"name": ', /JSON/i],
    ]
    for (const [body, message] of cases) {
      const res = await refused(() => api('POST', '/teams', body), 400, message)
      expect(res.error, JSON.stringify(body)).toBe('invalid_request')
    }
  })

  it('refuses a name another team has, ignoring case (409)', async () => {
    await create('Design')
    const body = await refused(() => api('POST', '/teams', { name: 'DESIGN' }), 409, /Another team/)
    expect(body.error).toBe('name_taken')
    const other = await create('Marketing')
    await refused(() => api('PATCH', `/teams/${other.id}`, { name: 'design' }), 409, /Another team/)
    // A team keeps its own name in another case.
    expect((await api('PATCH', `/teams/${other.id}`, { name: 'MARKETING' })).json()).toMatchObject({ name: 'MARKETING' })
  })

  it('refuses auth_method oauth2 without an OIDC provider, naming OIDC_ISSUER', async () => {
    const body = await refused(() => api('POST', '/teams', { name: 'OAuth people', auth_method: 'oauth2' }), 400, /OIDC_ISSUER/)
    expect(body.error).toBe('auth_method_unavailable')
    const team = await create('Stays SAML')
    await refused(() => api('PATCH', `/teams/${team.id}`, { auth_method: 'oauth2', name: 'Renamed too' }), 400, /OIDC_ISSUER/)
  })
})

describe('update', () => {
  it('renames a team and sets its sign-in method; the audit line says what changed', async () => {
    const team = await create('Support')
    const renamed = await api('PATCH', `/teams/${team.id}`, { name: 'Customer support' })
    expect(renamed.statusCode, renamed.body).toBe(200)
    expect(renamed.json()).toEqual({ ...team, name: 'Customer support' })

    const saml = (await api('PATCH', `/teams/${team.id}`, { auth_method: 'saml' })).json() as TeamJson
    expect(saml).toMatchObject({ name: 'Customer support', auth_method: 'saml', effective_auth_method: 'saml', enrollment_token: team.enrollment_token })
    expect((await postEnroll(t.app, { path: enrollPath(team.enrollment_token) })).headers['www-authenticate']).toBe(asWeb(team.enrollment_token))
    const back = (await api('PATCH', `/teams/${team.id}`, { auth_method: null })).json() as TeamJson
    expect(back).toMatchObject({ auth_method: null, effective_auth_method: 'saml' })
    expect(await t.app.db.prisma.team.findUniqueOrThrow({ where: { id: team.id } })).toMatchObject({ name: 'Customer support', authMethod: null })

    const changes = auditLines('team.update')
      .map((l) => l.admin as Json)
      .filter((a) => a.teamId === team.id)
      .map((a) => a.changed)
    expect(changes).toEqual([{ name: { from: 'Support', to: 'Customer support' } }, { authMethod: { from: null, to: 'saml' } }, { authMethod: { from: 'saml', to: null } }])
  })

  it('renames the Default team, which stays the Default team', async () => {
    const def = ((await api('GET', '/teams?limit=500')).json() as { items: TeamJson[] }).items.find((x) => x.is_default)!
    const res = await api('PATCH', `/teams/${def.id}`, { name: 'Everyone' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ name: 'Everyone', is_default: true, enrollment_token: def.enrollment_token })
    expect((await api('PATCH', `/teams/${def.id}`, { name: def.name })).statusCode).toBe(200)
  })

  it('refuses an empty change, unknown fields, an unknown id (404) and a malformed one (400)', async () => {
    const team = await create('Patched')
    await refused(() => api('PATCH', `/teams/${team.id}`, {}), 400, /give name, auth_method, enrollment_type/)
    await refused(() => api('PATCH', `/teams/${team.id}`, { name: 'New', is_default: true }), 400, /is_default/)
    await refused(() => api('PATCH', `/teams/${team.id}`, { name: '' }), 400, /name/)
    await refused(() => api('PATCH', '/teams/6f1c1d4e-2a3b-4c5d-8e9f-0a1b2c3d4e5f', { name: 'Ghost' }), 404, /No team/)
    await refused(() => api('PATCH', '/teams/6f1c1d4e', { name: 'Ghost' }), 400, /id/)
  })
})

describe('rotate-token', () => {
  it('gives the team a new token: the old enroll URL answers 404, the new one the challenge', async () => {
    const team = await create('Rotating')
    const old = team.enrollment_token
    expect((await postEnroll(t.app, { path: enrollPath(old) })).statusCode).toBe(401)

    const res = await api('POST', `/teams/${team.id}/rotate-token`)
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json() as { team: TeamJson; message: string }
    expect(body.message).toMatch(/previous enrollment token no longer works/)
    expect(body.message).not.toContain('Default team')
    const rotated = body.team
    expect(rotated.enrollment_token).not.toBe(old)
    expect(rotated.enrollment_token).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(rotated).toEqual({
      ...team,
      enrollment_token: rotated.enrollment_token,
      enroll_url: `${TEST_SERVER_URL}/api/mdm/apple/enroll/${rotated.enrollment_token}`,
      discovery: { Servers: [{ Version: 'mdm-byod', BaseURL: `${TEST_SERVER_URL}/api/mdm/apple/enroll/${rotated.enrollment_token}` }] },
    })
    expect((await api('GET', `/teams/${team.id}`)).json()).toEqual(rotated)

    const gone = await postEnroll(t.app, { path: enrollPath(old) })
    expect(gone.statusCode).toBe(404)
    expect(gone.headers['www-authenticate']).toBeUndefined()
    expect((await t.app.inject(`/mdm/sso/${old}`)).statusCode).toBe(404)
    const fresh = await postEnroll(t.app, { path: enrollPath(rotated.enrollment_token) })
    expect(fresh.statusCode).toBe(401)
    expect(fresh.headers['www-authenticate']).toBe(asWeb(rotated.enrollment_token))

    const line = auditLines('team.rotate_token').find((l) => (l.admin as Json).teamId === team.id)
    expect(line?.admin).toEqual({ action: 'team.rotate_token', teamId: team.id })
    expect(JSON.stringify(line)).not.toContain(old)
    expect(JSON.stringify(line)).not.toContain(rotated.enrollment_token)
  })

  it('says for the Default team that the URLs without a token still serve it; 404 for an unknown team', async () => {
    // A server of its own: rotating the shared app's Default team would leave app.defaultTeam stale for other tests.
    const other = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
    try {
      const res = await admin(other.app, 'POST', `/teams/${other.app.defaultTeam.id}/rotate-token`)
      expect(res.statusCode).toBe(200)
      expect((res.json() as { message: string }).message).toContain('/api/mdm/apple/enroll')
      expect((await postEnroll(other.app)).statusCode).toBe(401)
      expect((await admin(other.app, 'POST', '/teams/6f1c1d4e-2a3b-4c5d-8e9f-0a1b2c3d4e5f/rotate-token')).statusCode).toBe(404)
    } finally {
      await other.close()
    }
  }, BUILDS_AN_APP)
})

describe('the sign-in method against the configuration', () => {
  let idp: TestIdp
  beforeAll(async () => {
    idp = await startTestIdp()
  })
  afterAll(async () => idp?.close())

  it('with an OIDC provider: oauth2 is accepted and the enroll challenge follows every change', async () => {
    const { AUTH_METHOD: _, ...env } = oauth2Env(idp)
    const o = await buildTestApp({ env: { ...env, ADMIN_API_TOKEN: ADMIN_TOKEN } })
    try {
      const team = await create('OAuth team', null, o.app)
      const challenge = async () => (await postEnroll(o.app, { path: enrollPath(team.enrollment_token) })).headers['www-authenticate']
      expect(await challenge()).toBe(asWeb(team.enrollment_token))

      const patched = (await admin(o.app, 'PATCH', `/teams/${team.id}`, { auth_method: 'oauth2' })).json() as TeamJson
      expect(patched).toMatchObject({ auth_method: 'oauth2', effective_auth_method: 'oauth2' })
      expect(await challenge()).toBe(
        `Bearer method="apple-oauth2", authorization-url="${idp.issuer}/auth", token-url="${TEST_SERVER_URL}/api/v1/mdm/oauth2/token/${team.enrollment_token}", redirect-url="${APPLE_REDIRECT_URI}", client-id="${idp.clientId}", scope="openid email profile"`,
      )
      expect((await admin(o.app, 'PATCH', `/teams/${team.id}`, { auth_method: null })).json()).toMatchObject({ auth_method: null, effective_auth_method: 'saml' })
      expect(await challenge()).toBe(asWeb(team.enrollment_token))
      expect(await create('Born OAuth', 'oauth2', o.app)).toMatchObject({ auth_method: 'oauth2', effective_auth_method: 'oauth2' })
    } finally {
      await o.close()
    }
  }, BUILDS_AN_APP)

  it('without a SAML IdP or the development sign-in: saml is refused, null follows AUTH_METHOD=oauth2', async () => {
    const o = await buildTestApp({
      env: { ...oauth2Env(idp), ALLOW_DEV_SIGNIN: 'false', ADMIN_API_TOKEN: ADMIN_TOKEN },
    })
    try {
      const count = await o.app.db.prisma.team.count()
      const res = await admin(o.app, 'POST', '/teams', { name: 'Web people', auth_method: 'saml' })
      expect(res.statusCode).toBe(400)
      expect(res.json()).toMatchObject({ error: 'auth_method_unavailable', message: expect.stringMatching(/SAML_IDP_METADATA/) })
      expect(await o.app.db.prisma.team.count()).toBe(count)
      expect(await create('Default method', null, o.app)).toMatchObject({ auth_method: null, effective_auth_method: 'oauth2' })
    } finally {
      await o.close()
    }
  }, BUILDS_AN_APP)
})

describe('SSO_TEAM_GROUPS', () => {
  it('refuses a rename that would change which groups may enroll into the team (409)', async () => {
    const g = await buildTestApp({
      env: { ADMIN_API_TOKEN: ADMIN_TOKEN, SSO_TEAM_GROUPS: JSON.stringify({ Finance: ['g-finance'], 'Finance EU': ['g-finance'], Legal: ['g-legal'] }) },
    })
    try {
      const team = await create('Finance', null, g.app)
      for (const name of ['Open to all', 'finance', 'Legal']) {
        const res = await admin(g.app, 'PATCH', `/teams/${team.id}`, { name })
        expect(res.statusCode, name).toBe(409)
        expect(res.json()).toMatchObject({ error: 'team_groups', message: expect.stringMatching(/SSO_TEAM_GROUPS/) })
      }
      expect(await g.app.db.prisma.team.findUniqueOrThrow({ where: { id: team.id } })).toMatchObject({ name: 'Finance' })
      expect((await admin(g.app, 'PATCH', `/teams/${team.id}`, { name: 'Finance EU' })).json()).toMatchObject({ name: 'Finance EU' })
      // A team without groups may take a restricted name: that only narrows who may enroll.
      const open = await create('Open', null, g.app)
      expect((await admin(g.app, 'PATCH', `/teams/${open.id}`, { name: 'Legal' })).statusCode).toBe(200)
    } finally {
      await g.close()
    }
  }, BUILDS_AN_APP)
})

describe('authentication and documentation', () => {
  it('answers 401 on every teams endpoint without the admin token, and changes nothing', async () => {
    const team = await create('Guarded')
    const before = await teamRows()
    for (const [method, url, payload] of [
      ['GET', '/teams'],
      ['GET', `/teams/${team.id}`],
      ['POST', '/teams', { name: 'Intruder' }],
      ['PATCH', `/teams/${team.id}`, { name: 'Intruder' }],
      ['POST', `/teams/${team.id}/rotate-token`],
    ] as const) {
      const res = await t.app.inject({ method, url: `/api/v1/admin${url}`, ...(payload ? { payload } : {}) })
      expect(res.statusCode, `${method} ${url}`).toBe(401)
      expect(res.json()).toMatchObject({ error: 'unauthorized' })
    }
    expect(await teamRows()).toEqual(before)
  })

  it('lists the teams paths in the OpenAPI document with their schemas', async () => {
    const spec = (await t.app.inject('/api/v1/openapi.json')).json() as { paths: Record<string, Record<string, Json>> }
    const teams = spec.paths['/api/v1/admin/teams']!
    const one = spec.paths['/api/v1/admin/teams/{id}']!
    const rotate = spec.paths['/api/v1/admin/teams/{id}/rotate-token']!
    expect(Object.keys(teams).sort()).toEqual(['get', 'post'])
    expect(Object.keys(one).sort()).toEqual(['get', 'patch'])
    expect(Object.keys(rotate)).toEqual(['post'])

    const schemaOf = (op: Json, status: string) => ((op.responses as Json)[status] as { content: { 'application/json': { schema: Json } } }).content['application/json'].schema
    const bodyOf = (op: Json) => (op.requestBody as { content: { 'application/json': { schema: Json } } }).content['application/json'].schema
    expect(Object.keys(bodyOf(teams.post!).properties as Json).sort()).toEqual(['auth_method', 'enrollment_type', 'name'])
    expect(bodyOf(teams.post!).additionalProperties).toBe(false)
    expect(Object.keys(schemaOf(teams.post!, '201').properties as Json).sort()).toEqual(
      ['auth_method', 'created_at', 'discovery', 'effective_auth_method', 'enroll_url', 'enrollment_token', 'enrollment_type', 'id', 'is_default', 'name'].sort(),
    )
    expect(Object.keys(schemaOf(teams.get!, '200').properties as Json).sort()).toEqual(['items', 'next_cursor'])
    expect((teams.get!.parameters as { name: string; in: string }[]).map((p) => `${p.in}:${p.name}`).sort()).toEqual(['query:cursor', 'query:limit', 'query:name'])
    expect(one.patch!.description).toMatch(/ENROLL_DOMAINS/)
    expect(one.patch!.description).toMatch(/SSO_TEAM_GROUPS/)
    expect((one.get!.parameters as { name: string; in: string; schema: Json }[])[0]).toMatchObject({ in: 'path', name: 'id', schema: { format: 'uuid' } })
    expect(Object.keys(schemaOf(rotate.post!, '200').properties as Json).sort()).toEqual(['message', 'team'])
    expect(Object.keys(one.get!.responses as Json).sort()).toEqual(['200', '400', '401', '404'])
  })
})
