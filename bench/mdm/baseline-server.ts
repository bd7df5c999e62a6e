/**
 * The baseline every check-in figure is divided by: a bare Fastify route doing one primary-key query on
 * the same Postgres through `pg` with the same pool size as the server (DATABASE_POOL_MAX), no logging,
 * no parsing, no crypto. It is the most a Node process can answer here per database round trip.
 *
 *   BASELINE_DATABASE_URL=postgres://... PORT=1234 node --import tsx bench/mdm/baseline-server.ts
 */
import Fastify from 'fastify'
import pg from 'pg'

const url = process.env.BASELINE_DATABASE_URL
if (!url) throw new Error('BASELINE_DATABASE_URL is required')
const pool = new pg.Pool({ connectionString: url, max: Number(process.env.DATABASE_POOL_MAX ?? 10) })
const ROWS = 1000

const app = Fastify({ logger: false })
app.get('/healthz', async () => ({ status: 'ok' }))
app.get<{ Params: { id: string } }>('/row/:id', async (request) => {
  const { rows } = await pool.query('SELECT id, payload FROM bench_rows WHERE id = $1', [Number(request.params.id) % ROWS])
  return rows[0]
})

await pool.query('CREATE TABLE IF NOT EXISTS bench_rows (id integer PRIMARY KEY, payload text NOT NULL)')
await pool.query(`INSERT INTO bench_rows SELECT i, md5(i::text) FROM generate_series(0, ${ROWS - 1}) i ON CONFLICT DO NOTHING`)
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
const stop = () => app.close().then(() => pool.end()).then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
