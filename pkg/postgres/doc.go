// Package postgres is Manushya's PostgreSQL plumbing: connection pools, per-service
// schema migrations, transactions, and the row-level security (RLS) tenancy model every
// store relies on.
//
// # Schemas and migrations
//
// The database is shared; each service owns one schema (identity, memory, policy, ...)
// and ships its goose SQL migrations embedded in the binary as a [Migrations] set.
// [Migrate] applies the sets, each into its own schema with its own version table
// (<schema>.goose_db_version), while holding a PostgreSQL advisory lock so several
// processes (the Helm pre-upgrade Job and a developer's `manushya migrate`, say) can
// race safely. Migrations run with search_path set to "<schema>, public", so unqualified
// names land in the service's schema and extension types in public (pgvector's vector)
// resolve; queries at run time should still name the schema (identity.identities),
// because one pool may serve several schemas. Services call [CheckSchema] on start and
// refuse to serve against a schema older than the binary.
//
// # Two roles
//
// Two database roles exist:
//
//   - the owner role (manushya) creates the schemas and owns every table; only
//     `manushya migrate` connects as it;
//   - the app role (manushya_app) is what services connect as. [Migrate] grants it
//     USAGE on each schema and SELECT/INSERT/UPDATE/DELETE on the tables (plus the
//     sequences), never ownership, and never CREATE. It is NOSUPERUSER and NOBYPASSRLS;
//     [CheckAppRole] refuses to start a service connected as anything that would skip
//     RLS.
//
// # Tenancy with row-level security
//
// Every tenant-scoped table has a tenant_id column, RLS enabled and FORCEd (so even the
// owner is filtered, which keeps a data migration run as the owner from touching other
// tenants by accident), and one policy, tenant_isolation, whose USING and WITH CHECK
// clauses compare tenant_id with the transaction-local setting manushya.tenant_id
// ([TenantSetting]); [RLSPolicySQL] returns the statements. current_setting(..., true)
// yields NULL or an empty string when the setting is absent, and NULLIF turns the
// latter into NULL, so a transaction that never set a tenant sees no rows and can write
// none: forgetting the tenant fails closed.
//
// [InTenantTx] is how stores work on tenant data: it opens a transaction, sets
// manushya.tenant_id with set_config(..., true) so the value dies with the transaction
// (a pooled connection never carries one tenant's setting into another's request), and
// runs the callback. The application checks tenant ids too; RLS is the backstop that
// holds even when a query forgets its WHERE tenant_id = ... clause.
//
// Package pgtest gives tests a freshly migrated database per test, with both roles.
package postgres
