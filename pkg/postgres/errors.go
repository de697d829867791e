package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes the stores and this package care about.
const (
	codeUniqueViolation       = "23505"
	codeForeignKeyViolation   = "23503"
	codeUndefinedTable        = "42P01"
	codeInsufficientPrivilege = "42501"
)

// IsUniqueViolation reports whether err is PostgreSQL refusing a duplicate key, which
// stores usually map to an "already exists" error.
func IsUniqueViolation(err error) bool {
	return hasCode(err, codeUniqueViolation)
}

// IsForeignKeyViolation reports whether err is PostgreSQL refusing a row whose
// reference does not exist (or a delete of a row still referenced).
func IsForeignKeyViolation(err error) bool {
	return hasCode(err, codeForeignKeyViolation)
}

// ConstraintName returns the name of the constraint err violated, or "" when err is not
// a constraint violation; stores with several unique keys use it to say which clashed.
func ConstraintName(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.ConstraintName
	}
	return ""
}

func hasCode(err error, code string) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == code
}
