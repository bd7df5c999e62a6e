import { defineConfig } from 'prisma/config'

// Only `prisma generate` is used (see scripts/prisma-generate.mjs); migrations are plain SQL files in
// prisma/migrations that the server applies itself.
export default defineConfig({ schema: 'prisma/schema.prisma' })
