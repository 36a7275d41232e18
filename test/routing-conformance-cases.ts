// The route-condition conformance table: conditions, the message they run against and the value
// each must yield. Shared by test/routing-conditions.test.ts (JS reference) and
// test/route-vm-differential.test.ts (the WASM VM must agree on every row).
import type { RouteMessage } from '../src/routing/route-message.js'

export const BODY = {
  Weather: {
    HistoricalData: [{ Month: 'Feb', Avg: 2.5 }, { Month: 'Mar', Avg: 7 }],
    Location: { State: 'WA', City: 'Redmond' },
    IsEnabled: true, Disabled: false, Temp: 21.5, Neg: -4, Zero: 0, Nothing: null,
    Tags: ['a', 'b'], Name: 'Ünïcode Straße', Count: 10,
  },
  'dotted.key': 1,
}

export const TWIN = {
  deviceId: 'thermostat-1',
  tags: { location: 'US-West', floor: 3, building: { name: 'B43' } },
  properties: { desired: { interval: 30 }, reported: { fw: '1.2.0', battery: 87.5 } },
}

export const MESSAGE: RouteMessage = {
  systemProperties: {
    contentType: 'application/json', contentEncoding: 'UTF-8', 'message-id': 'm-1', correlationId: 'c-1', userId: 'u1',
    'iothub-connection-device-id': 'thermostat-1', 'iothub-enqueuedtime': '2017-05-08T18:55:31.8514657Z',
    connectionDeviceGenerationId: '636672412113475345', 'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub"}',
    'iothub-message-source': 'deviceMessages', 'dt-dataschema': 'dtmi:com:example:Thermostat;1', 'iothub-creation-time-utc': '2021-04-21T11:30:16Z',
  },
  appProperties: {
    processingPath: 'hot', severity: '3', Level: 'High', 'iothub-message-schema': 'schemaA', empty: '', 'a.b': 'dotted',
    num: '12.5', bad: '12a', big: '12345678901234567890', opType: 'deviceConnected', contentType: 'app-prop-ct', fallback: 'fb',
  },
  body: Buffer.from(JSON.stringify(BODY)),
  twin: TWIN,
}

/** [condition, expected value]; 'array' / 'object' stand for any array / object. */
export type Expected = undefined | null | boolean | number | string | 'array' | 'object'
export const ROUTE_CASES: Array<[string, Expected]> = [
  // literals and defaults
  ['true', true], ['false', false], ['TRUE', true], ['null', null], ['undefined', undefined], ['', true], ['   ', true],
  ['42', 42], ['0x1F', 31], ['1.5e2', 150], ['.5', 0.5], ["'a\\'b'", "a'b"], ['"dq"', 'dq'], ["'\\u00e9'", 'é'],
  // system properties
  ["$contentType = 'application/json'", true], ["$contentEncoding = 'UTF-8'", true], ["$messageId = 'm-1'", true],
  ["$correlationId = 'c-1'", true], ["$userId = 'u1'", true], ["$connectionDeviceId = 'thermostat-1'", true],
  ['is_defined($connectionModuleId)', false], ["$enqueuedTime > '2017-05-08T00:00:00Z'", true],
  ["$enqueuedTime < \"2017-05-08T00:00:00Z\"", false], ["$connectionDeviceGenerationId = '636672412113475345'", true],
  ["contains($connectionAuthMethod, '\"sas\"')", true], ["$iothub-message-source = 'deviceMessages'", true],
  ["$dt-dataschema = 'dtmi:com:example:Thermostat;1'", true], ["$iothub-creation-time-utc = '2021-04-21T11:30:16Z'", true],
  ["$CONTENTTYPE = 'application/json'", true], ["$iothub-enqueuedtime = $enqueuedTime", true],
  ["$fallback = 'fb'", true], ['$nosuch', undefined],
  // application properties
  ["processingPath = 'hot'", true], ["PROCESSINGPATH = 'hot'", true], ["level = 'High'", true], ["level = 'high'", false],
  ["iothub-message-schema = 'schemaA'", true], ["opType = 'deviceConnected'", true], ["a.b = 'dotted'", true],
  ["contentType = 'app-prop-ct'", true], ["empty = ''", true], ['missing', undefined], ["missing = 'x'", undefined],
  ['severity = 3', undefined], ["severity = '3'", true], ['as_number(severity) <= 3', true], ['as_number(num) * 2', 25],
  ['as_number(bad)', undefined], ['as_number(big)', 12345678901234567000], ["as_number('-0.5e-3')", -0.0005], ["as_number('01')", undefined],
  ["as_number(' 1')", undefined], ["as_number('1e400')", undefined], ['as_number(7)', 7], ['as_number(true)', undefined],
  // body
  ["$body.Weather.HistoricalData[0].Month = 'Feb'", true], ['$body.Weather.HistoricalData[1].Avg', 7],
  ['$body.Weather.HistoricalData[2]', undefined], ['length($body.Weather.Location.State) = 2', true], ['$body.Weather.IsEnabled', true],
  ['$body.Weather.Disabled', false], ['$body.Weather.Temp > 20', true], ['$body.Weather.Temp', 21.5], ['$body.Weather.Nothing', null],
  ['is_null($body.Weather.Nothing)', true], ['is_defined($body.Weather.Nothing)', true], ['$body.Weather', 'object'], ['$body.Weather.Tags', 'array'],
  ['$body', undefined], ['$body[0]', undefined], ['$body.nope.deeper', undefined], ['$body.Weather.Temp.x', undefined],
  ['$body.Weather.Tags[1]', 'b'], ['$body.Weather.Tags.length', undefined], ['$body.Weather.Location[0]', undefined],
  ['$body.Weather = $body.Weather', undefined], ["$body.Weather.Name = 'Ünïcode Straße'", true], ['$body.Weather.Name', 'Ünïcode Straße'],
  ['$BODY.Weather.Count', 10], ['$body.weather', undefined],
  // twin
  ["$twin.tags.location = 'US-West'", true], ['$twin.tags.floor + 1', 4], ["$twin.tags.building.name = 'B43'", true],
  ['$twin.properties.desired.interval >= 30', true], ["$twin.properties.reported.fw = '1.2.0'", true], ['$twin.properties.reported.battery', 87.5],
  ['$twin.tags.nope', undefined], ['$twin.deviceId', 'thermostat-1'],
  // comparison and type rules
  ['1 = 1', true], ['1 != 1', false], ['1 <> 2', true], ['1 < 2', true], ['2 <= 2', true], ['3 > 2', true], ['2 >= 3', false],
  ["'abc' < 'abd'", true], ["'B' < 'a'", true], ["'a' = 'a'", true], ['true = true', true], ['false < true', true],
  ['null = null', true], ["null = 'x'", undefined], ["1 = '1'", undefined], ['true = 1', undefined], ['undefined = undefined', undefined],
  ['missing != 1', undefined],
  // arithmetic
  ['1 + 2 * 3', 7], ['(1 + 2) * 3', 9], ['7 % 3', 1], ['-7 % 3', -1], ['10 / 4', 2.5], ['1 / 0', undefined], ['0 / 0', undefined],
  ['5 % 0', undefined], ["'a' + 'b'", undefined], ['-$body.Weather.Neg', 4], ["-'x'", undefined], ['2 - -3', 5], ['1 - 2 - 3', -4],
  ['missing + 1', undefined], ['1e308 * 10', undefined],
  // logic
  ['true AND true', true], ['true AND false', false], ['false AND missing', false], ['missing AND false', false],
  ['missing AND true', undefined], ['true OR missing', true], ['missing OR true', true], ['missing OR false', undefined],
  ['false OR false', false], ['NOT true', false], ['NOT false', true], ['NOT missing', undefined], ["NOT 'x'", undefined],
  ["1 AND true", undefined], ['NOT 1 = 2', true], ['true OR false AND false', true], ['(true OR false) AND false', false],
  ['not not true', true],
  // IN / NIN
  ["processingPath IN ['hot', 'cold']", true], ["processingPath NIN ['hot', 'cold']", false], ["level IN ['x']", false],
  ['missing IN [1]', undefined], ['missing NIN [1]', undefined], ['2 IN [1, 2, 3]', true], ['-1 IN [-1]', true], ['null IN [null]', true],
  ['$body.Weather IN [1]', undefined], ['1 IN []', false],
  // math functions
  ['abs(-2.5)', 2.5], ['abs($body.Weather.Neg)', 4], ["abs('x')", undefined], ['exp(0)', 1], ['exp(1)', Math.exp(1)], ['exp(1000)', undefined],
  ['power(2, 10)', 1024], ['power(2, 0.5)', Math.SQRT2], ["power(2, 'x')", undefined], ['power(-8, 1/3)', undefined], ['square(3)', 9],
  ['square(1e200)', undefined], ['ceiling(1.2)', 2], ['ceiling(-1.2)', -1], ['floor(-1.2)', -2], ['floor(1.8)', 1], ['sign(-3)', -1],
  ['sign(0)', 0], ['sign(2.5)', 1], ['sqrt(16)', 4], ['sqrt(-1)', undefined], ['sqrt(2)', Math.SQRT2],
  // type checks
  ['is_array($body.Weather.Tags)', true], ['is_array($body.Weather)', false], ['is_bool($body.Weather.IsEnabled)', true], ["is_bool('true')", false],
  ['is_defined(processingPath)', true], ['is_defined(missing)', false], ['is_defined($body.Weather)', true], ['is_null(missing)', false],
  ['is_number($body.Weather.Temp)', true], ['is_number(severity)', false], ['is_object($body.Weather)', true], ['is_object($body.Weather.Tags)', false],
  ['is_object(null)', false], ['is_primitive(null)', true], ['is_primitive($body.Weather.Tags)', false], ['is_primitive(missing)', false],
  ['is_string(severity)', true], ['is_string(3)', false],
  // string functions
  ["concat('a', 'b', 'c')", 'abc'], ["concat(processingPath, '-', level)", 'hot-High'], ["concat('a', 1)", undefined], ["concat('x')", 'x'],
  ["length('')", 0], ["length('héllo')", 5], ['length(3)', undefined], ["lower('AbC')", 'abc'], ["upper('AbC')", 'ABC'],
  ['upper($body.Weather.Name)', 'ÜNÏCODE STRASSE'], ['lower($body.Weather.Name)', 'ünïcode straße'], ['lower(1)', undefined],
  ["substring('hello', 1)", 'ello'], ["substring('hello', 1, 3)", 'ell'], ["substring('hello', -2, 2)", 'he'], ["substring('hello', 3, 100)", 'lo'],
  ["substring('hello', 9)", ''], ["substring('hello', 1.9, 2.9)", 'el'], ["substring('hello', 1, -1)", ''], ["substring(1, 1)", undefined],
  ["index_of('hello', 'l')", 2], ["index_of('hello', 'z')", -1], ["index_of('hello', '')", 0], ["starts_with('hello', 'he')", true],
  ["STARTSWITH('hello', 'lo')", false], ["ends_with('hello', 'lo')", true], ["EndsWith('hello', 'hello!')", false],
  ["contains('hello', 'ell')", true], ["contains('hello', 'xyz')", false], ["contains(1, 'x')", undefined],
  ["starts_with($connectionDeviceId, 'thermo')", true],
  // names with dashes versus subtraction
  ['$body.Weather.Count-3', 7], ['$body.Weather.Count - 3', 7],
]

/** Conditions the parser must reject: [condition, line, column, message fragment]. */
export const ROUTE_SYNTAX_ERRORS: Array<[string, number, number, string]> = [
  ["processingPath = ", 1, 18, 'end of input'],
  ["processingPath == 'hot'", 1, 17, 'expected an expression'],
  ["(true", 1, 6, "expected ')'"],
  ["true)", 1, 5, "unexpected ')'"],
  ["'abc", 1, 1, 'unterminated string'],
  ["nosuch(1)", 1, 1, "unknown function 'nosuch'"],
  ["length()", 1, 1, 'LENGTH takes 1 argument, got 0'],
  ["substring('a')", 1, 1, 'SUBSTRING takes 2 to 3 arguments, got 1'],
  ["a = 1 #", 1, 7, "unexpected character '#'"],
  ["$body.x[-1]", 1, 9, 'non-negative integer'],
  ["$body.x[1.5]", 1, 9, 'non-negative integer'],
  ["a AND\n  AND b", 2, 3, "unexpected keyword 'AND'"],
  ["a IN 'x'", 1, 6, "expected '['"],
  ["a IN [b]", 1, 7, 'only constants'],
  ["length(['a'])", 1, 8, 'only allowed after IN'],
  ["array_contains($body.x, 1)", 1, 1, "unknown function 'array_contains'"],
  ["$ = 1", 1, 1, "property name after '$'"],
  ["a.", 1, 3, 'property name'],
  ["12abc", 1, 1, 'invalid number'],
  ["'\\q'", 1, 2, 'invalid escape'],
  ["1e999", 1, 1, 'out of range'],
]
