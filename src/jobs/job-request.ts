// Scheduled jobs (jobs.md): the JobRequest a back end PUTs to /jobs/v2/{jobId}, checked into the
// record the hub keeps, and the JobResponse it answers with. The record is what LMDB stores; the
// response is built from it.
import { randomUUID } from 'node:crypto'
import { HubError } from '../rest/hub-error.js'
import { QuerySyntaxError } from '../query-common/errors.js'
import { parseQuery } from '../query/query-parser.js'
import { MAX_METHOD_PAYLOAD_BYTES } from '../mqtt/method-calls.js'
import { METHOD_NAME, seconds } from '../rest/method-routes.js'
import { checkContent, checkSize } from '../../shards/twin-rules.js'

export type JobType = 'scheduleDeviceMethod' | 'scheduleUpdateTwin'
/** queued: waiting to run; scheduled: waiting for its startTime */
export type JobStatus = 'queued' | 'scheduled' | 'running' | 'completed' | 'failed' | 'cancelled'
export const TERMINAL: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'cancelled'])

export interface MethodCall {
  methodName: string
  payload: unknown
  responseTimeoutInSeconds: number
  connectTimeoutInSeconds: number
}

export interface DeviceJobStatistics {
  deviceCount: number
  failedCount: number
  succeededCount: number
  runningCount: number
  pendingCount: number
}

export interface JobRecord {
  jobId: string
  /** this job's own id (a job id can be used again once the old job left the history): what twins remember */
  runId?: string
  type: JobType
  queryCondition: string
  createdTime: string
  /** when it is to start (as asked, or when it was created) */
  startTime: string
  /** when it started running (maxExecutionTimeInSeconds counts from here) */
  ranFrom?: string
  endTime?: string
  maxExecutionTimeInSeconds: number
  status: JobStatus
  cloudToDeviceMethod?: MethodCall
  updateTwin?: { patch: Record<string, unknown>; etag: string }
  failureReason?: string
  statusMessage?: string
  deviceJobStatistics: DeviceJobStatistics
}

// same characters as a device id (jobs.md leaves the rule to us)
const JOB_ID = /^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/
const DEFAULT_MAX_EXECUTION_SECONDS = 3600
/** A job's own time budget is capped (Azure documents none): a week. */
const MAX_EXECUTION_SECONDS = 7 * 86_400

export function checkJobId(id: string): void {
  if (!JOB_ID.test(id)) throw new HubError(400004, `JobId ${JSON.stringify(id)} is invalid: 1-128 ASCII letters, digits or - . % _ * ? ! ( ) , : = @ $ '`)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}


/** `*` (or nothing) targets every device; anything else must parse as the WHERE clause of a twin query. */
export function checkCondition(condition: unknown): string {
  if (typeof condition !== 'string' || condition.trim() === '') throw new HubError(400004, 'queryCondition is required: a WHERE clause over device twins, or *')
  const c = condition.trim()
  if (c === '*') return c
  try {
    parseQuery(`SELECT * FROM devices WHERE ${c}`)
  } catch (e) {
    if (e instanceof QuerySyntaxError) throw new HubError(400004, `queryCondition does not parse: ${e.message}`)
    throw e
  }
  return c
}

function methodCall(v: unknown): MethodCall {
  if (!isObject(v)) throw new HubError(400004, 'cloudToDeviceMethod is required for a scheduleDeviceMethod job')
  if (typeof v.methodName !== 'string' || !METHOD_NAME.test(v.methodName)) {
    throw new HubError(400004, 'cloudToDeviceMethod.methodName is required: 1-128 printable US-ASCII characters without $ ( ) < > @ , ; : \\ " / [ ] ? = { } or spaces')
  }
  const payload = v.payload ?? null
  if (Buffer.byteLength(JSON.stringify(payload)) > MAX_METHOD_PAYLOAD_BYTES) throw new HubError(413001, `cloudToDeviceMethod.payload exceeds ${MAX_METHOD_PAYLOAD_BYTES} bytes`)
  return {
    methodName: v.methodName, payload,
    responseTimeoutInSeconds: seconds(v.responseTimeoutInSeconds, 'cloudToDeviceMethod.responseTimeoutInSeconds', 30, 5, 300),
    connectTimeoutInSeconds: seconds(v.connectTimeoutInSeconds, 'cloudToDeviceMethod.connectTimeoutInSeconds', 0, 0, 300),
  }
}

function twinUpdate(v: unknown): { patch: Record<string, unknown>; etag: string } {
  if (!isObject(v)) throw new HubError(400004, 'updateTwin is required for a scheduleUpdateTwin job')
  const { etag, ...patch } = v
  // the twin patch names an etag; * applies it whatever each twin's is (jobs.md)
  if (typeof etag !== 'string' || etag === '') throw new HubError(400004, 'updateTwin.etag is required ("*" applies the patch to any twin)')
  if (patch.tags === undefined && patch.properties === undefined) throw new HubError(400004, 'updateTwin must change tags or properties.desired')
  if (patch.properties !== undefined && !isObject(patch.properties)) throw new HubError(400004, 'updateTwin.properties must be an object')
  if (isObject(patch.properties) && patch.properties.reported !== undefined) throw new HubError(400004, 'updateTwin cannot change reported properties')
  // checked now as each twin would check it: a patch every twin refuses would fail the whole fleet
  // one device at a time (and it is kept with the job's history)
  const desired = isObject(patch.properties) ? patch.properties.desired : undefined
  if (patch.tags !== undefined && patch.tags !== null) { checkContent('tags', patch.tags, true); checkSize('tags', patch.tags as Record<string, unknown>) }
  if (desired !== undefined && desired !== null) { checkContent('desired', desired, true); checkSize('desired', desired as Record<string, unknown>) }
  return { patch, etag }
}

function startTimeOf(v: unknown, now: Date): string {
  if (v === undefined || v === null) return now.toISOString()
  // ISO 8601 only (Date.parse would take "1" as the year 2001)
  const t = typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) ? Date.parse(v) : NaN
  if (!Number.isFinite(t)) throw new HubError(400004, 'startTime must be an ISO 8601 time')
  return new Date(t).toISOString()
}

/** The record for a PUT /jobs/v2/{jobId} body; HubError 400004 for what Azure refuses. */
export function jobFromRequest(jobId: string, body: unknown, now = new Date()): JobRecord {
  checkJobId(jobId)
  if (!isObject(body)) throw new HubError(400004, 'the body must be a job request object')
  if (body.jobId !== undefined && body.jobId !== jobId) throw new HubError(400004, `the body's jobId ${JSON.stringify(body.jobId)} is not the path's ${jobId}`)
  const type = body.type
  if (type !== 'scheduleDeviceMethod' && type !== 'scheduleUpdateTwin') throw new HubError(400004, 'type must be scheduleDeviceMethod or scheduleUpdateTwin')
  const startTime = startTimeOf(body.startTime, now)
  const record: JobRecord = {
    jobId, runId: randomUUID(), type, queryCondition: checkCondition(body.queryCondition), createdTime: now.toISOString(), startTime,
    maxExecutionTimeInSeconds: seconds(body.maxExecutionTimeInSeconds, 'maxExecutionTimeInSeconds', DEFAULT_MAX_EXECUTION_SECONDS, 1, MAX_EXECUTION_SECONDS),
    status: Date.parse(startTime) > now.getTime() ? 'scheduled' : 'queued',
    deviceJobStatistics: { deviceCount: 0, failedCount: 0, succeededCount: 0, runningCount: 0, pendingCount: 0 },
  }
  if (type === 'scheduleDeviceMethod') record.cloudToDeviceMethod = methodCall(body.cloudToDeviceMethod)
  else record.updateTwin = twinUpdate(body.updateTwin)
  return record
}

/** The JobResponse Azure answers with. */
export function jobResponse(j: JobRecord): Record<string, unknown> {
  return {
    jobId: j.jobId, type: j.type, status: j.status, queryCondition: j.queryCondition,
    createdTime: j.createdTime, startTime: j.startTime, ...(j.endTime ? { endTime: j.endTime } : {}),
    maxExecutionTimeInSeconds: j.maxExecutionTimeInSeconds,
    ...(j.cloudToDeviceMethod ? { cloudToDeviceMethod: j.cloudToDeviceMethod } : {}),
    ...(j.updateTwin ? { updateTwin: { ...j.updateTwin.patch, etag: j.updateTwin.etag } } : {}),
    ...(j.failureReason ? { failureReason: j.failureReason } : {}),
    ...(j.statusMessage ? { statusMessage: j.statusMessage } : {}),
    deviceJobStatistics: j.deviceJobStatistics,
  }
}
