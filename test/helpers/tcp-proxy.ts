/**
 * A TCP proxy to a real server that a test can cut and restore: the database "goes away" (connections
 * reset, new ones refused) and comes back on the same address, without touching the shared Postgres.
 */
import net from 'node:net'
import { createTestDatabase, TEST_DATABASE_URL, type TestDatabase } from './database.js'

export interface TcpProxy {
  port: number
  /** Resets every open connection and refuses new ones. */
  cut(): Promise<void>
  /** Accepts connections again on the same port. */
  restore(): Promise<void>
  close(): Promise<void>
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>()
  const make = () =>
    net.createServer((client) => {
      const upstream = net.connect(target.port, target.host)
      sockets.add(client).add(upstream)
      const drop = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on('error', drop).on('close', drop)
      upstream.on('error', drop).on('close', drop)
      client.pipe(upstream).pipe(client)
    })
  let server = make()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.resetAndDestroy()
      sockets.clear()
      server.close(() => resolve())
    })
  return {
    port,
    cut: stop,
    async restore() {
      server = make()
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    },
    close: stop,
  }
}

/**
 * A fresh Postgres test database (TEST_DATABASE_URL) reached through a proxy the test can cut, with short
 * timeouts so an outage shows quickly. Pass `database` to buildTestApp; `drop()` closes the proxy and
 * drops the database.
 */
export async function createProxiedTestDatabase(): Promise<{ database: TestDatabase; proxy: TcpProxy; drop(): Promise<void> }> {
  const direct = await createTestDatabase()
  const target = new URL(TEST_DATABASE_URL!)
  const proxy = await startTcpProxy({ host: target.hostname || '127.0.0.1', port: Number(target.port || 5432) })
  const viaProxy = new URL(direct.url!)
  viaProxy.hostname = '127.0.0.1'
  viaProxy.port = String(proxy.port)
  return {
    database: { ...direct, options: { kind: 'postgres', url: viaProxy.toString(), poolMax: 3, statementTimeoutMs: 2000, connectTimeoutMs: 1000 } },
    proxy,
    async drop() {
      await proxy.close()
      await direct.drop()
    },
  }
}
