/**
 * The SSO page in a real browser (Debian's Chromium, driven by playwright-core): it loads without
 * console errors (CSP violations included), sends the user to the IdP, whose page posts the signed
 * Response back, and ends on the `apple-remotemanagement-user-login://` redirect carrying a token that
 * fetches an enrollment profile. Also the development sign-in and the page's retry after a failed start.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkTokenForEnrollment } from '../../../src/services/tokens.js'
import { postEnroll } from '../../helpers/enroll.js'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { createTestIdp, serveIdp, type TestIdp } from '../../helpers/saml-idp.js'
import { freePort } from '../../helpers/ports.js'
import { spFromMetadata, tokenRecord } from '../../helpers/sso.js'

const CALLBACK = /^apple-remotemanagement-user-login:\/\/authentication-results\?access-token=([A-Za-z0-9_-]+)$/

let context: BrowserContext
let userDataDir: string
beforeAll(async () => {
  userDataDir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-chromium-'))
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}, 60_000)
afterAll(async () => {
  await context?.close()
  rmSync(userDataDir, { recursive: true, force: true })
})

/** The app listening on 127.0.0.1 with SERVER_URL set to that address (a loopback URL). */
async function listeningApp(env: Record<string, string> = {}): Promise<TestApp & { base: string }> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const t = await buildTestApp({ env: { SERVER_URL: base, ...env } })
  await t.app.listen({ port, host: '127.0.0.1' })
  const close = t.close
  // Chromium keeps connections open (keep-alive); do not wait out their timeout when the test ends.
  t.close = async () => {
    const closing = close()
    t.app.server.closeAllConnections()
    await closing
  }
  return Object.assign(t, { base })
}

/** Console errors and page errors seen by `page`, with the URL they came from. */
function watchErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.location().url}: ${m.text()}`)
  })
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`))
  return errors
}

/** Resolves with the Location of the first 308 to the device's callback scheme. */
function deviceCallback(page: Page): Promise<string> {
  return new Promise((resolve) => {
    page.on('response', (r) => {
      const location = r.headers().location
      if (r.status() === 308 && location && CALLBACK.test(location)) resolve(location)
    })
  })
}

describe('SSO page in Chromium', () => {
  let idp: TestIdp
  let t: TestApp & { base: string }
  let idpServer: Awaited<ReturnType<typeof serveIdp>>
  beforeAll(async () => {
    const idpPort = await freePort()
    idp = await createTestIdp({ ssoUrl: `http://127.0.0.1:${idpPort}/saml/sso` })
    t = await listeningApp(idp.env)
    idpServer = await serveIdp(idp, await spFromMetadata(t.app), { nameId: 'alice@example.test' })
  })
  afterAll(async () => {
    await idpServer?.close()
    await t?.close()
  })

  it('goes from the page to the IdP and back to the device with a working token', async () => {
    const page = await context.newPage()
    const errors = watchErrors(page)
    const callback = deviceCallback(page)
    const ssoPage = `${t.base}/mdm/sso?user-identifier=${encodeURIComponent('alice@example.test')}`
    // The navigation ends on a scheme the browser cannot open; the 308 itself is what the device reads.
    page.goto(ssoPage).catch(() => {})
    const location = await callback
    const token = CALLBACK.exec(location)![1]!
    const record = await tokenRecord(t.app, token)
    expect(checkTokenForEnrollment(record, t.app.defaultTeam.id)).toBeNull()
    expect(record.userIdentifier).toBe('alice@example.test')
    // The device now enrolls with the token.
    expect((await postEnroll(t.app, { token })).statusCode).toBe(200)
    expect(idpServer.requests).toHaveLength(1)
    // The page URL holds the team token and the identifier: the IdP must not get it as Referer.
    expect(idpServer.referers).toEqual([undefined])
    expect(errors).toEqual([])
    await page.close()
  })

  it('shows the failure and a working retry button when the start request fails', async () => {
    const page = await context.newPage()
    const errors = watchErrors(page)
    // The network drops the first start request, as a flaky mobile connection would.
    const startUrl = `${t.base}/api/v1/mdm/sso`
    await page.route(startUrl, (route) => route.abort('connectionrefused'))
    await page.goto(`${t.base}/mdm/sso?user-identifier=bob@example.test`)
    await page.locator('#failure').waitFor({ state: 'visible' })
    expect(await page.locator('#failure-message').textContent()).toContain('could not be reached')
    expect(await page.locator('#status').isHidden()).toBe(true)
    // With interception on, Chromium reports the final redirect as an aborted request, not a response.
    await page.unroute(startUrl)
    const callback = deviceCallback(page)
    await page.locator('#retry').click()
    const record = await tokenRecord(t.app, CALLBACK.exec(await callback)![1]!)
    expect(record.userIdentifier).toBe('bob@example.test')
    // The dropped request is the only error, and it is the one we caused.
    expect(errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e))).toEqual([])
    await page.close()
  })
})

describe('development sign-in in Chromium', () => {
  let t: TestApp & { base: string }
  beforeAll(async () => {
    t = await listeningApp()
  })
  afterAll(async () => t?.close())

  it('lets a newcomer type an email and ends on the device callback with a dev token', async () => {
    expect(t.config.sso.devSignIn).toBe(true)
    const page = await context.newPage()
    const errors = watchErrors(page)
    await page.goto(`${t.base}/mdm/sso/${t.app.defaultTeam.enrollmentToken}?user-identifier=newcomer@example.test`)
    expect(await page.locator('.badge').textContent()).toBe('Development sign-in')
    expect(await page.locator('#email').inputValue()).toBe('newcomer@example.test')
    await page.locator('#email').fill('someone.else@example.test')
    const callback = deviceCallback(page)
    page.locator('#dev-sign-in').click().catch(() => {})
    const token = CALLBACK.exec(await callback)![1]!
    const record = await tokenRecord(t.app, token)
    expect(record.method).toBe('dev')
    expect(record.user.email).toBe('someone.else@example.test')
    expect(record.userIdentifier).toBe('newcomer@example.test')
    expect(checkTokenForEnrollment(record, t.app.defaultTeam.id)).toBeNull()
    expect((await postEnroll(t.app, { token })).statusCode).toBe(200)
    expect(errors).toEqual([])
    await page.close()
  })
})
