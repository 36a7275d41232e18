// Route conditions use the lexer shared with the twin query language (src/query-common/lexer.ts):
// the two languages have the same tokens; only what a name means differs (see condition-parser.ts).
export { tokenize as tokenizeCondition, type Token, type TokenKind } from '../query-common/lexer.js'
export { QuerySyntaxError } from '../query-common/errors.js'
