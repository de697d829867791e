// Package kv is the small key-value store behind caches, idempotency keys and
// counters: Redis in deployments, an in-process map in development and tests of
// code that does not care.
//
// Both implementations pass the same contract tests, so code written against Store
// behaves the same with either. Code that needs more of Redis than Store offers
// (Lua-scripted rate limiting, pub/sub) takes the client from RedisClient and falls
// back to an in-process equivalent when there is none.
package kv
