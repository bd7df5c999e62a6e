/**
 * `npm run doctor`: checks the configuration the server would use (the same environment variables) and
 * prints one line per check: ok, warn, fail or skipped, each with a fix. Exits 1 when a check fails.
 *
 *   npm run doctor
 *   npm run doctor -- --connect-to example.com:443:10.0.0.5:443   # check a proxy before DNS points at it
 *
 * Extra trust roots for a private CA: NODE_EXTRA_CA_CERTS=/path/ca.pem (devices must trust it as well).
 */
import { formatLine, parseConnectTo, runDoctor, summary, type ConnectTo } from './doctor/index.js'

const USAGE = `usage: npm run doctor [-- --connect-to HOST1:PORT1:HOST2:PORT2 ...]

Checks the configuration in the environment (the variables npm start reads) and prints one line per
check: ok, warn, fail or skipped. Exits 1 when any check fails.

  --connect-to HOST1:PORT1:HOST2:PORT2  connect to HOST2:PORT2 whenever HOST1:PORT1 is asked for
                                        (as curl does; TLS still checks HOST1's certificate)
`

function parseArgs(argv: string[]): { connectTo: ConnectTo[] } | undefined {
  const connectTo: ConnectTo[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') return undefined
    const value = arg.startsWith('--connect-to=') ? arg.slice('--connect-to='.length) : arg === '--connect-to' ? argv[++i] : null
    if (value === null || value === undefined) throw new Error(`unknown argument ${arg}`)
    connectTo.push(parseConnectTo(value))
  }
  return { connectTo }
}

try {
  const args = parseArgs(process.argv.slice(2))
  if (!args) {
    process.stdout.write(USAGE)
    process.exit(0)
  }
  const results = await runDoctor(process.env, { connectTo: args.connectTo })
  process.stdout.write(`${results.map(formatLine).join('\n')}\n\n${summary(results)}\n`)
  process.exit(results.some((r) => r.status === 'fail') ? 1 : 0)
} catch (err) {
  process.stderr.write(`doctor: ${(err as Error).message}\n${USAGE}`)
  process.exit(2)
}
