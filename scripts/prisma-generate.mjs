// Runs `prisma generate` without network access.
//
// Every Prisma 7 CLI command first tries to download the native schema engine, even `generate`, which
// never uses it. Pointing PRISMA_SCHEMA_ENGINE_BINARY at any existing file skips that download; we use
// the Node binary itself. The server never runs the Prisma CLI: it applies prisma/migrations itself
// (src/storage/migrate.ts).
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cli = require.resolve('prisma/build/index.js')
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1' }
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath
const result = spawnSync(process.execPath, [cli, 'generate'], { stdio: ['ignore', 'ignore', 'inherit'], env })
if (result.status !== 0) {
  console.error('prisma generate failed')
  process.exit(result.status ?? 1)
}
