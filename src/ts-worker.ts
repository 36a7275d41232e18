// A worker thread running one of the hub's TypeScript files. A worker does not inherit the parent's
// tsx hooks, so a one-line bootstrap registers them in the worker and then imports the file.
import { Worker, type WorkerOptions } from 'node:worker_threads'

export function tsWorker(file: URL, options: Omit<WorkerOptions, 'eval'>): Worker {
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})`
    + `.then((tsx) => { tsx.register(); return import(${JSON.stringify(file.href)}) })`
  return new Worker(bootstrap, { ...options, eval: true })
}
