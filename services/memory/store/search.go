package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// searchSettings scopes a search statement to its tenant ($1) and sets the
// planner and pgvector up for it: read only; iterative HNSW scans (so filtered
// searches still fill their limit) with the given ef_search ($2); custom plans
// (a generic plan of a cached statement cannot see the filter values and picks
// bad plans for vector queries); no JIT (vector plans carry high cost
// estimates, and compiling them costs more than they run); no parallel workers
// (a search reads a few thousand buffers at most; with many concurrent
// searches on few cores, launching workers costs more than it saves). All are
// local to the statement's transaction.
const searchSettings = `SELECT set_config('` + postgres.TenantSetting + `', $1, true),
set_config('transaction_read_only', 'on', true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
set_config('hnsw.ef_search', $2, true), set_config('plan_cache_mode', 'force_custom_plan', true),
set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)`

// InSearch runs fn with a Tx whose statements read tenantID's rows with the
// settings of a search (searchSettings). Each statement is one round trip: the
// settings and the statement go to the server as one pipelined batch, which
// PostgreSQL runs as one implicit transaction, so the settings apply to that
// statement and end with it. A search used to pay three round trips (BEGIN
// with the settings, the query, COMMIT) for its one query; on two cores at
// concurrency 8 the two saved ones were a tenth of a small-scope search.
//
// The statements of one fn do not share a snapshot (a hybrid search's two
// arms each see the rows committed when they run), and the Tx has no
// transaction (Tx.Tx is nil): it is for reads only.
func (s *Store) InSearch(ctx context.Context, tenantID uuid.UUID, efSearch int, fn func(*Tx) error) error {
	db := &searchDB{pool: s.pool, tenant: tenantID.String(), efSearch: strconv.Itoa(efSearch)}
	return mapErr(fn(&Tx{Queries: sqlc.New(db), db: db}))
}

// searchDB runs each statement (or batch) behind searchSettings, in one batch.
// It implements sqlc.DBTX, so the generated queries run the same way.
type searchDB struct {
	pool     *pgxpool.Pool
	tenant   string
	efSearch string
}

// SendBatch sends the settings and then b's statements as one batch (searches
// send no batches of their own; this completes sqlc.DBTX).
func (d *searchDB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	all := &pgx.Batch{}
	all.Queue(searchSettings, d.tenant, d.efSearch)
	all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
	return &afterSettings{BatchResults: d.pool.SendBatch(ctx, all)}
}

// afterSettings are a batch's results past its first statement, the settings:
// reading the first result reads (and checks) the settings' one before it.
type afterSettings struct {
	pgx.BatchResults
	read bool
	err  error
}

func (r *afterSettings) settings() error {
	if !r.read {
		r.read = true
		if _, err := r.BatchResults.Exec(); err != nil {
			r.err = fmt.Errorf("search settings: %w", err)
		}
	}
	return r.err
}

func (r *afterSettings) Exec() (pgconn.CommandTag, error) {
	if err := r.settings(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.BatchResults.Exec()
}

func (r *afterSettings) Query() (pgx.Rows, error) {
	if err := r.settings(); err != nil {
		return nil, err
	}
	return r.BatchResults.Query()
}

func (r *afterSettings) QueryRow() pgx.Row {
	if err := r.settings(); err != nil {
		return &batchRow{err: err}
	}
	return r.BatchResults.QueryRow()
}

func (d *searchDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br := d.SendBatch(ctx, one(sql, args))
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (d *searchDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := d.Query(ctx, sql, args...)
	return &batchRow{rows: rows, err: err}
}

func (d *searchDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br := d.SendBatch(ctx, one(sql, args))
	tag, err := br.Exec()
	return tag, errors.Join(err, br.Close())
}

// one is a batch of one statement.
func one(sql string, args []any) *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	return b
}

// batchRows are the rows of a batch's last statement; closing them closes the
// batch, which hands the connection back to the pool.
type batchRows struct {
	pgx.Rows
	br       pgx.BatchResults
	closed   bool
	closeErr error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.closeErr = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.closeErr
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close() // the rows are done: release the connection now, as pgx rows do
	return false
}

// batchRow is QueryRow's row: the first row of the result, or pgx.ErrNoRows.
type batchRow struct {
	rows pgx.Rows
	err  error
}

func (r *batchRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
