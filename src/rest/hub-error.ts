// IoT Hub errors as the SDKs parse them: HTTP status, the `iothub-errorcode` header and a body whose
// Message starts with `ErrorCode:<Name>;`.
import { randomBytes } from 'node:crypto'

const NAMES: Record<number, string> = {
  400001: 'InvalidProtocolVersion', 400003: 'InvalidOperation', 400004: 'ArgumentInvalid', 400008: 'BlobContainerValidationError', 400032: 'ManagedIdentityNotEnabled', 400005: 'ArgumentNull', 400012: 'DeserializationError',
  400014: 'DefaultStorageEndpointNotConfigured', 400028: 'InvalidDeviceScope', 400011: 'DeviceDefinedMultipleTimes', 413002: 'TooManyDevices', 400015: 'InvalidFileUploadCorrelationId', 400016: 'ExpiredFileUploadCorrelationId',
  400019: 'InvalidFileUploadCompletionStatus', 400020: 'InvalidStorageEndpointOrBlob', 403006: 'DeviceMaximumActiveFileUploadLimitExceeded',
  401003: 'IotHubUnauthorized', 403010: 'OperationNotAvailableInCurrentTier', 403004: 'DeviceMaximumQueueDepthExceeded', 403012: 'DeviceDisabled', 403800: 'DeviceMaximumInflightMethodExceeded',
  404000: 'GenericNotFound', 404001: 'DeviceNotFound', 404010: 'ModuleNotFound', 404301: 'ConfigurationNotFound', 409401: 'ConfigurationAlreadyExists', 413101: 'ConfigurationCountLimitExceeded', 409301: 'ModuleAlreadyExistsOnDevice', 413003: 'TooManyModulesOnDevice', 404103: 'DeviceNotOnline', 405000: 'GenericMethodNotAllowed',
  409000: 'GenericConflict', 409001: 'DeviceAlreadyExists', 412001: 'PreconditionFailed', 412002: 'DeviceMessageLockLost',
  413000: 'GenericRequestEntityTooLarge', 413001: 'MessageTooLarge', 415000: 'GenericUnsupportedMediaType',
  404002: 'JobNotFound', 409104: 'JobAlreadyExists', 429004: 'ThrottlingMaxActiveJobCountExceeded',
  429001: 'ThrottlingException', 429002: 'ThrottleBacklogLimitExceeded', 403002: 'IotHubQuotaExceeded', 500001: 'ServerError', 503001: 'ServiceUnavailable', 503005: 'ServerBusy', 504101: 'GatewayTimeout',
}

export class HubError extends Error {
  constructor(readonly code: number, message: string) {
    super(message)
  }
  get status(): number { return Math.floor(this.code / 1000) }
  get codeName(): string { return NAMES[this.code] ?? 'GenericError' }
}

function trackingTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0')
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`
}

/** The HTTP body for an error, in Azure's form A (`ErrorCode:<Name>;<text>`). */
export function errorBody(err: HubError): string {
  const tracking = `Tracking ID:${randomBytes(16).toString('hex')}-G:0-TimeStamp:${trackingTimestamp(new Date())}`
  return JSON.stringify({ Message: `ErrorCode:${err.codeName};${err.message}`, ExceptionMessage: tracking })
}

/** The body device transports (MQTT twin/method replies) use. */
export function deviceErrorBody(err: HubError): string {
  return JSON.stringify({ errorCode: err.code, trackingId: randomBytes(16).toString('hex'), message: err.message, timestampUtc: new Date().toISOString() })
}
