// piscina loads its task file without the hub's tsx hooks (workers do not inherit them): register
// them here, then hand piscina the TypeScript task.
const { register } = await import('tsx/esm/api')
register()
const task = await import('./query-worker.ts')
export default task.default
