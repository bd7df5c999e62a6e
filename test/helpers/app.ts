/**
 * Builds the real application against a fresh test database, with log lines captured so tests can
 * assert what was (and was not) logged.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config/index.js'
import { createTestDatabase, type TestDatabase } from './database.js'

export const TEST_SERVER_URL = 'https://mdm.example.test'

export interface TestApp {
  app: App
  config: Config
  database: TestDatabase
  /** Every log line written so far, raw JSON text. */
  logLines: string[]
  /** Log lines parsed. */
  logs(): Record<string, unknown>[]
  close(): Promise<void>
}

export interface TestAppOptions {
  /** Environment variables on top of the test defaults. */
  env?: Record<string, string | undefined>
  /** Share a database with another app (a second server process); it is then not dropped by close(). */
  database?: TestDatabase
}

export function testConfig(env: Record<string, string | undefined> = {}, dataDir?: string): Config {
  return loadConfig({
    SERVER_URL: TEST_SERVER_URL,
    SERVER_SECRET: 'test-server-secret-0123456789abcdef0123456789',
    DATA_DIR: dataDir ?? path.join(tmpdir(), 'byod-mdm-test-unused'),
    LOG_LEVEL: 'info',
    ORG_NAME: 'Example Corp',
    // TEST_SERVER_URL is not a loopback address; without an IdP the server would refuse to start.
    ALLOW_DEV_SIGNIN: 'true',
    // A test file sends hundreds of enroll requests from one address; the rate limit has its own test.
    ENROLL_RATE_LIMIT: '100000',
    ...env,
  })
}

export async function buildTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const ownsDatabase = !options.database
  const database = options.database ?? (await createTestDatabase())
  const dataDir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-test-'))
  const logLines: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logLines.push(line)
      cb()
    },
  })
  const config = testConfig(options.env, dataDir)
  let app: App
  try {
    app = await buildApp(config, { databaseOptions: database.options, logStream })
  } catch (err) {
    if (ownsDatabase) await database.drop()
    rmSync(dataDir, { recursive: true, force: true })
    throw err
  }
  return {
    app,
    config,
    database,
    logLines,
    logs: () => logLines.map((l) => JSON.parse(l) as Record<string, unknown>),
    async close() {
      await app.close()
      if (ownsDatabase) await database.drop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** Two app instances on one fresh database (two server processes behind a load balancer). */
export interface TestAppPair {
  a: TestApp
  b: TestApp
  /** Closes both and drops their database. */
  close(): Promise<void>
}

export async function buildTestAppPair(env: Record<string, string | undefined> = {}): Promise<TestAppPair> {
  const database = await createTestDatabase()
  let a: TestApp | undefined
  try {
    a = await buildTestApp({ env, database })
    const b = await buildTestApp({ env, database })
    return {
      a,
      b,
      async close() {
        await Promise.all([a!.close(), b.close()])
        await database.drop()
      },
    }
  } catch (err) {
    await a?.close()
    await database.drop()
    throw err
  }
}
