// `npx hyperhub …`: the hub's command line, for the people who run it (what `az iot hub` and
// `emqx ctl` are elsewhere). Each command lives in commands/; this file wires them to commander and
// turns every failure into one line on stderr with a non-zero exit code.
import { pathToFileURL } from 'node:url'
import { Command, CommanderError, Option } from 'commander'
import { CliError, printable } from './output.js'
import { resolveTarget, type HubTarget, type TargetOptions } from './hub-target.js'
import { serviceClient, type ServiceClient } from './service-client.js'
import { deviceCommands } from './commands/device.js'
import { twinCommands } from './commands/twin.js'
import { invokeCommand } from './commands/invoke.js'
import { c2dCommands } from './commands/c2d.js'
import { monitorEventsCommand } from './commands/monitor-events.js'
import { simulateCommand } from './commands/simulate.js'
import { usageCommand } from './commands/usage.js'
import { tokenCommand } from './commands/token.js'
import { startCommand } from './commands/start.js'

export interface GlobalOptions extends TargetOptions {
  json?: boolean
}

/** What a command gets: the global options and, on demand, a client of the hub they name. */
export interface CommandContext {
  options: GlobalOptions
  /** the hub the options name (found on first use) */
  target(): HubTarget
  /** the hub's service API (opened on first use, closed when the command ends) */
  client(): ServiceClient
  /** printed on stdout */
  print(text: string): void
}

function contextOf(cmd: Command): CommandContext & { close(): Promise<void> } {
  const options = cmd.optsWithGlobals<GlobalOptions>()
  let root = cmd
  while (root.parent) root = root.parent
  options.dataDirGiven = root.getOptionValueSource('dataDir') === 'cli'
  let opened: ServiceClient | undefined
  let found: HubTarget | undefined
  const target = () => (found ??= resolveTarget(options))
  return {
    options,
    target,
    client: () => (opened ??= serviceClient(target())),
    print: (text) => { process.stdout.write(`${text}\n`) },
    close: async () => { await opened?.close() },
  }
}

/** Runs a command's action with its context; errors leave as CliError to the one place that prints them. */
export function action(run: (ctx: CommandContext, ...args: any[]) => Promise<void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command
    const ctx = contextOf(cmd)
    try {
      await run(ctx, ...args.slice(0, -1))
    } finally {
      await ctx.close()
    }
  }
}

export function buildProgram(): Command {
  const program = new Command('hyperhub')
    .description('Run and manage a Hyperhub: devices, twins, methods, C2D, live events, simulated devices and usage.')
    .addOption(new Option('-l, --connection-string <cs>', 'a service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…); default: $HYPERHUB_CONNECTION_STRING unless --data-dir is given, else the data directory\'s hub'))
    .addOption(new Option('--data-dir <dir>', 'the data directory of a hub on this machine (its keys, CA and ports)').default(process.env.HYPERHUB_DATA_DIR ?? './data'))
    .addOption(new Option('--policy <name>', 'the shared access policy whose key signs requests (with --data-dir)').default('iothubowner'))
    .addOption(new Option('--hub <host:port>', 'where to dial (default: the connection string\'s host on 443, or the address the hub wrote in its data directory)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust (default: the data directory\'s tls/ca.pem, the system\'s and NODE_EXTRA_CA_CERTS)'))
    .addOption(new Option('--json', 'print JSON for scripts instead of tables'))
    .showSuggestionAfterError(true)
    .showHelpAfterError(false)
  program.addCommand(startCommand())
  program.addCommand(deviceCommands())
  program.addCommand(tokenCommand())
  program.addCommand(twinCommands())
  program.addCommand(invokeCommand())
  program.addCommand(c2dCommands())
  program.addCommand(monitorEventsCommand())
  program.addCommand(simulateCommand())
  program.addCommand(usageCommand())
  // every command: commander's errors become one line (ours are printed by main)
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureHelp({ showGlobalOptions: true }).configureOutput({
      // "error: unknown option '--x'\n(Did you mean --y?)" → "hyperhub: unknown option '--x' (Did you mean --y?)"
      outputError: (text, write) => write(`hyperhub: ${text.trimEnd().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`),
    })
    for (const sub of cmd.commands) configure(sub)
  }
  configure(program)
  return program
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv, { from: 'user' })
    return process.exitCode === undefined ? 0 : Number(process.exitCode)
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are "errors" to commander; exit code 0 for them
      return e.exitCode === 0 ? 0 : 2
    }
    if (e instanceof CliError) {
      process.stderr.write(`hyperhub: ${printable(e.message)}\n`)
      return e.exitCode
    }
    process.stderr.write(`hyperhub: ${printable((e as Error).message ?? String(e))}\n`)
    return 1
  }
}

/** Exits once what was written has left: process.exit() drops what a pipe has not taken yet (output cut at 64 KiB). */
export function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

// a reader that went away (`| head`): nothing more to print, and no stack trace
process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw e })

// run when executed, not when a test imports buildProgram
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // `start` never returns here: the hub runs until a signal ends the process
  exitWhenFlushed(await main(process.argv.slice(2)))
}
