// Package pgtest gives each test its own PostgreSQL database, migrated and ready, as
// fast as a file copy.
//
// The first test that asks for a given set of migrations builds a template database
// (pgvector installed, the migrations applied by postgres.Migrate exactly as
// `manushya migrate` would) and marks it as a template that nobody may connect to. Every
// test then gets CREATE DATABASE ... TEMPLATE, which copies it, and the copy is dropped
// when the test ends. Templates are named after a hash of the schema names and
// migration files, so they are reused across runs until a migration changes, and an
// advisory lock on the maintenance database keeps the parallel processes of
// `go test ./...` from building the same template twice or dropping one in use.
//
// Tests connect as the app role, like the services, so row-level security is in force;
// the owner and superuser URLs are there for setting up what the app role may not.
//
// MANUSHYA_TEST_DATABASE_URL names the superuser connection to the maintenance database
// (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). Set
// MANUSHYA_TEST_KEEP_DB=1 to keep each test's database for inspection.
package pgtest
