// The twin query language has exactly the route conditions' tokens plus a few keywords (SELECT, TOP,
// FROM, WHERE, GROUP BY, AS), which are names to the lexer; so both use one lexer.
export { tokenize as tokenizeQuery, type Token, type TokenKind } from '../query-common/lexer.js'
export { QuerySyntaxError } from '../query-common/errors.js'
