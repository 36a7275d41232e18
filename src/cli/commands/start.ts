// `hyperhub start [hub options]`: the hub itself, as `npm start` runs it (options: `hyperhub start --help`).
import { Command } from 'commander'

export function startCommand(): Command {
  return new Command('start')
    .description('run the hub in this process (its options: hyperhub start --help); Ctrl-C stops it')
    .helpOption(false)
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .argument('[options...]', 'the hub\'s own options, as npm start takes them')
    .action(async (args: string[], _o: unknown, cmd: Command) => {
      // `--data-dir` is also the command line's own option, which commander takes wherever it stands
      const program = cmd.parent!
      if (program.getOptionValueSource('dataDir') === 'cli') args = ['--data-dir', program.opts<{ dataDir: string }>().dataDir, ...args]
      // loaded here: the other commands need none of the hub's modules
      const { runHub } = await import('../../main.js')
      await runHub(args)
      // the hub runs until a signal stops it (main.ts exits the process then)
      if (!args.includes('--help') && !args.includes('-h')) await new Promise<never>(() => {})
    })
}
