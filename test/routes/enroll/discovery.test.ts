/** Service discovery through the real app: domain mapping, refusals, HEAD, model families. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { createTestDatabase, hasPostgres, type TestDatabase } from '../../helpers/database.js'
import { postEnroll, signIn } from '../../helpers/enroll.js'

const WELL_KNOWN = '/.well-known/com.apple.remotemanagement'
const query = (params: Record<string, string>) => `${WELL_KNOWN}?${new URLSearchParams(params)}`

function expectRefusal(res: Awaited<ReturnType<TestApp['app']['inject']>>, description: RegExp, message?: RegExp) {
  expect(res.statusCode).toBe(403)
  expect(res.headers['content-type']).toBe('application/json')
  expect(res.headers['cache-control']).toBe('no-store')
  const body = res.json()
  expect(Object.keys(body).sort()).toEqual(['code', 'description', 'message'])
  expect(body.code).toBe('com.apple.well-known.failed')
  expect(body.description).toMatch(description)
  if (message) expect(body.message).toMatch(message)
}

describe('without ENROLL_DOMAINS', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await buildTestApp()
  })
  afterAll(async () => t.close())

  it('sends every domain to the Default team as mdm-byod JSON, not cached', async () => {
    const token = (await t.app.db.prisma.team.findFirstOrThrow({ where: { isDefault: true } })).enrollmentToken
    for (const id of ['alice@example.com', 'Bob.Smith+ipad@Sub.Example.ORG']) {
      const res = await t.app.inject(query({ 'user-identifier': id, 'model-family': 'iPhone' }))
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toBe('application/json')
      expect(res.headers['cache-control']).toBe('no-store')
      expect(res.json()).toEqual({ Servers: [{ Version: 'mdm-byod', BaseURL: `https://mdm.example.test/api/mdm/apple/enroll/${token}` }] })
    }
  })

  it('answers HEAD with the same status and headers and no body', async () => {
    const url = query({ 'user-identifier': 'alice@example.com', 'model-family': 'iPad' })
    const get = await t.app.inject(url)
    const head = await t.app.inject({ method: 'HEAD', url })
    expect(head.statusCode).toBe(200)
    expect(head.body).toBe('')
    expect(head.headers['content-type']).toBe('application/json')
    expect(head.headers['cache-control']).toBe('no-store')
    expect(head.headers['content-length']).toBe(get.headers['content-length'])
    const refused = await t.app.inject({ method: 'HEAD', url: WELL_KNOWN })
    expect(refused.statusCode).toBe(403)
    expect(refused.body).toBe('')
  })

  it('refuses a missing, repeated or malformed user-identifier with the JSON Apple shows the user', async () => {
    expectRefusal(await t.app.inject(WELL_KNOWN), /user-identifier is missing/, /name@domain/)
    expectRefusal(await t.app.inject(`${WELL_KNOWN}?user-identifier=a@example.com&user-identifier=b@example.com`), /more than once/)
    for (const bad of ['alice', '@example.com', 'alice@', 'alice@localhost', 'alice@exa mple.com', 'alice@-example.com', `${'x'.repeat(65)}@example.com`, 'al\u0000ice@example.com']) {
      expectRefusal(await t.app.inject(query({ 'user-identifier': bad })), /user-identifier is not/)
    }
    // The refusal is logged with its reason.
    expect(t.logs().some((l) => l.msg === 'service discovery refused' && l.reason === 'user-identifier is missing')).toBe(true)
  })

  it('accepts the families with user enrollment, a request without model-family, and refuses the others', async () => {
    for (const family of ['iPhone', 'iPad', 'Mac', 'RealityDevice']) {
      expect((await t.app.inject(query({ 'user-identifier': 'a@example.com', 'model-family': family }))).statusCode, family).toBe(200)
    }
    expect((await t.app.inject(query({ 'user-identifier': 'a@example.com' }))).statusCode).toBe(200)
    expectRefusal(await t.app.inject(query({ 'user-identifier': 'a@example.com', 'model-family': 'Watch' })), /model family Watch is not enabled/, /Example Corp does not allow enrolling this kind of device/)
    expectRefusal(await t.app.inject(query({ 'user-identifier': 'a@example.com', 'model-family': 'Toaster' })), /not a known model family/)
  })

  it('never answers an HTML 404 around the well-known path', async () => {
    const res = await t.app.inject('/.well-known/com.apple.remotemanagement.json')
    expect(res.statusCode).toBe(404)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
  })
})

describe('with ENROLL_DOMAINS and ENROLL_MODEL_FAMILIES', () => {
  const env = { ENROLL_DOMAINS: 'Example.com, example.org=Contractors', ENROLL_MODEL_FAMILIES: 'iPad,Mac' }
  let database: TestDatabase
  let a: TestApp
  let b: TestApp
  beforeAll(async () => {
    database = await createTestDatabase()
    // Two processes on one database both start with the mapping: the team is created once. They start
    // together on Postgres; an in-process PGlite serves one process at a time (as in production).
    if (hasPostgres) [a, b] = await Promise.all([buildTestApp({ env, database }), buildTestApp({ env, database })])
    else [a, b] = [await buildTestApp({ env, database }), await buildTestApp({ env, database })]
  })
  afterAll(async () => {
    await a.close()
    await b.close()
    await database.drop()
  })

  it('creates the named team once and sends each mapped domain to its team', async () => {
    const prisma = a.app.db.prisma
    const contractors = await prisma.team.findMany({ where: { name: 'Contractors' } })
    expect(contractors).toHaveLength(1)
    const defaultToken = (await prisma.team.findFirstOrThrow({ where: { isDefault: true } })).enrollmentToken

    const mapped = await a.app.inject(query({ 'user-identifier': 'pat@EXAMPLE.org', 'model-family': 'Mac' }))
    expect(mapped.statusCode).toBe(200)
    expect(mapped.json().Servers[0].BaseURL).toBe(`https://mdm.example.test/api/mdm/apple/enroll/${contractors[0]!.enrollmentToken}`)
    const fromB = await b.app.inject(query({ 'user-identifier': 'pat@example.org', 'model-family': 'Mac' }))
    expect(fromB.json()).toEqual(mapped.json())

    const plain = await a.app.inject(query({ 'user-identifier': 'kim@example.com', 'model-family': 'iPad' }))
    expect(plain.json().Servers[0].BaseURL).toBe(`https://mdm.example.test/api/mdm/apple/enroll/${defaultToken}`)
  })

  it('refuses a domain it does not serve, subdomains included', async () => {
    expectRefusal(await a.app.inject(query({ 'user-identifier': 'eve@example.net', 'model-family': 'Mac' })), /domain example\.net is not served/, /Example Corp does not manage devices for accounts at example\.net/)
    expectRefusal(await a.app.inject(query({ 'user-identifier': 'eve@sub.example.com', 'model-family': 'Mac' })), /domain sub\.example\.com is not served/)
  })

  it('refuses a disabled family at discovery and at the enroll endpoint (PRODUCT iPhone12,1)', async () => {
    expectRefusal(await a.app.inject(query({ 'user-identifier': 'kim@example.com', 'model-family': 'iPhone' })), /model family iPhone is not enabled/)
    const { token } = await signIn(a.app)
    const res = await postEnroll(a.app, { token })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ error: 'model_family_not_allowed' })
    expect(await a.app.db.prisma.enrollmentProfile.count()).toBe(0)
  })
})
