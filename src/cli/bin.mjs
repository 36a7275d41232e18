#!/usr/bin/env node
// `npx hyperhub …`: the command line runs from its TypeScript sources through tsx (as `npm start` does).
import { register } from 'tsx/esm/api'

register()
const { main, exitWhenFlushed } = await import('./hyperhub.ts')
exitWhenFlushed(await main(process.argv.slice(2)))
