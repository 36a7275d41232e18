// Azure's size limit of a device-to-cloud message: body plus property names and values.
export const MAX_MESSAGE_BYTES = 256 * 1024
