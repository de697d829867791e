package memory

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/keyring"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// setEncryption turns tenant A's text encryption on or off as its admin.
func (b *testBundle) setEncryption(t *testing.T, on bool) *memoryv1.MemorySettings {
	t.Helper()
	resp, err := b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{EncryptText: on}, UpdateMask: mask("encrypt_text"),
	})
	require.NoError(t, err)
	require.Equal(t, on, resp.GetSettings().GetEncryptText())
	return resp.GetSettings()
}

// plaintextRows counts the rows of tenant's memories and versions whose stored
// bytes hold needle, in the text column or in the sealed one.
func (b *testBundle) plaintextRows(t *testing.T, tenant uuid.UUID, needle string) int {
	t.Helper()
	var n int
	require.NoError(t, b.admin.QueryRow(context.Background(), `SELECT
  (SELECT count(*) FROM memory.memories WHERE tenant_id = $1
     AND (strpos(text, $2) > 0 OR position(convert_to($2, 'UTF8') IN coalesce(text_sealed, ''::bytea)) > 0
          OR tsv <> ''::tsvector))
+ (SELECT count(*) FROM memory.memory_versions WHERE tenant_id = $1
     AND (strpos(text, $2) > 0 OR position(convert_to($2, 'UTF8') IN coalesce(text_sealed, ''::bytea)) > 0))`,
		tenant, needle).Scan(&n))
	return n
}

func TestMemorySettings(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})

	got, err := b.client.GetMemorySettings(as("admin-a"), &memoryv1.GetMemorySettingsRequest{})
	require.NoError(t, err)
	require.False(t, got.GetSettings().GetEncryptText())
	require.Equal(t, int32(30), got.GetSettings().GetRestoreWindowDays(), "the default window")
	require.Nil(t, got.GetSettings().GetUpdateTime(), "never changed")

	// Settings are the admins': users and agents may neither read nor change them.
	for _, key := range []string{"user1", "agent1"} {
		_, err := b.client.GetMemorySettings(as(key), &memoryv1.GetMemorySettingsRequest{})
		requireCode(t, err, codes.PermissionDenied)
		_, err = b.client.UpdateMemorySettings(as(key), &memoryv1.UpdateMemorySettingsRequest{
			Settings: &memoryv1.MemorySettings{EncryptText: true}, UpdateMask: mask("encrypt_text"),
		})
		requireCode(t, err, codes.PermissionDenied)
	}

	// Bad input names the field.
	for _, tc := range []struct {
		req   *memoryv1.UpdateMemorySettingsRequest
		field string
	}{
		{&memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{RestoreWindowDays: -1}, UpdateMask: mask("restore_window_days")}, "settings.restore_window_days"},
		{&memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{RestoreWindowDays: 3651}}, "settings.restore_window_days"},
		{&memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{}, UpdateMask: mask("encryption_in_progress")}, "update_mask.paths[0]"},
		{&memoryv1.UpdateMemorySettingsRequest{Settings: &memoryv1.MemorySettings{}}, "update_mask"},
	} {
		_, err := b.client.UpdateMemorySettings(as("admin-a"), tc.req)
		requireField(t, err, tc.field)
	}

	upd, err := b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{RestoreWindowDays: 7},
	})
	require.NoError(t, err)
	require.Equal(t, int32(7), upd.GetSettings().GetRestoreWindowDays())
	require.False(t, upd.GetSettings().GetEncryptText(), "left out of the mask, unchanged")
	require.NotNil(t, upd.GetSettings().GetUpdateTime())

	// 0 is a valid window (keep until hard-deleted); named in the mask it is set.
	upd, err = b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{}, UpdateMask: mask("restore_window_days"),
	})
	require.NoError(t, err)
	require.Equal(t, int32(0), upd.GetSettings().GetRestoreWindowDays())

	// Another tenant keeps its own settings.
	other, err := b.client.GetMemorySettings(as("admin-b"), &memoryv1.GetMemorySettingsRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(30), other.GetSettings().GetRestoreWindowDays())
}

func TestEncryptionNeedsTheKeyring(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true, noKeyring: true})
	_, err := b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{EncryptText: true}, UpdateMask: mask("encrypt_text"),
	})
	requireCode(t, err, codes.FailedPrecondition)
}

func TestEncryptedTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	st := b.setEncryption(t, true)
	require.True(t, st.GetEncryptionInProgress(), "the existing rows (none) are still to be checked")

	const secret = "The vault combination is seventeen twenty nine"
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: secret, Type: "note", Wait: true})
	require.Equal(t, secret, m.GetText())
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus(), m.GetEmbeddingError())

	// Stored sealed: no plaintext and no tsvector in the memory or its version.
	var text string
	var sealed []byte
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text, text_sealed FROM memory.memories WHERE id = $1`, m.GetId()).Scan(&text, &sealed))
	require.Empty(t, text)
	require.NotEmpty(t, sealed)
	require.Zero(t, b.plaintextRows(t, b.tenantA, "vault"))

	// Every read path opens it.
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Equal(t, secret, got.GetMemory().GetText())
	list, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetMemories(), 1)
	require.Equal(t, secret, list.GetMemories()[0].GetText())
	vs, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "vault combination", Mode: memoryv1.SearchMode_SEARCH_MODE_VECTOR})
	require.NoError(t, err)
	require.Equal(t, []string{m.GetId()}, ids(vs.GetResults()))
	require.Equal(t, secret, vs.GetResults()[0].GetMemory().GetText())

	// Keyword and hybrid search are refused, naming the reason.
	for _, mode := range []memoryv1.SearchMode{memoryv1.SearchMode_SEARCH_MODE_KEYWORD, memoryv1.SearchMode_SEARCH_MODE_HYBRID} {
		_, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "vault", Mode: mode})
		requireCode(t, err, codes.FailedPrecondition)
		require.Contains(t, err.Error(), "encrypt")
	}
	// With the embedding service down, vector search does not fall back to keyword.
	b.embedder.fail.Store(true)
	_, err = b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "vault"})
	requireCode(t, err, codes.Unavailable)
	b.embedder.fail.Store(false)

	// Update and history round-trip the text; an update of the metadata alone
	// keeps the ciphertext.
	const secret2 = "The vault combination changed to eighty one"
	upd, err := b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m.GetId(), Text: secret2}, UpdateMask: mask("text"), Wait: true,
	})
	require.NoError(t, err)
	require.Equal(t, secret2, upd.GetMemory().GetText())
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, upd.GetMemory().GetEmbeddingStatus(), upd.GetMemory().GetEmbeddingError())
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text_sealed FROM memory.memories WHERE id = $1`, m.GetId()).Scan(&sealed))
	upd, err = b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m.GetId(), Type: "secret"}, UpdateMask: mask("type"),
	})
	require.NoError(t, err)
	require.Equal(t, secret2, upd.GetMemory().GetText())
	var after []byte
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text_sealed FROM memory.memories WHERE id = $1`, m.GetId()).Scan(&after))
	require.Equal(t, sealed, after)
	hist, err := b.client.ListMemoryVersions(as("user1"), &memoryv1.ListMemoryVersionsRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Len(t, hist.GetVersions(), 3)
	require.Equal(t, secret2, hist.GetVersions()[0].GetText())
	require.Equal(t, secret2, hist.GetVersions()[1].GetText())
	require.Equal(t, secret, hist.GetVersions()[2].GetText())
	require.Zero(t, b.plaintextRows(t, b.tenantA, "vault"))

	// Bulk create, soft delete and restore return the text as well.
	bulk, err := b.client.BulkCreateMemories(as("user1"), &memoryv1.BulkCreateMemoriesRequest{Memories: []*memoryv1.CreateMemoryRequest{
		{Text: "vault spare key under the mat"},
	}})
	require.NoError(t, err)
	require.Equal(t, "vault spare key under the mat", bulk.GetResults()[0].GetMemory().GetText())
	del, err := b.client.DeleteMemory(as("user1"), &memoryv1.DeleteMemoryRequest{Id: bulk.GetResults()[0].GetMemory().GetId()})
	require.NoError(t, err)
	require.Equal(t, "vault spare key under the mat", del.GetMemory().GetText())
	res, err := b.client.RestoreMemory(as("user1"), &memoryv1.RestoreMemoryRequest{Id: del.GetMemory().GetId()})
	require.NoError(t, err)
	require.Equal(t, "vault spare key under the mat", res.GetMemory().GetText())
	require.Zero(t, b.plaintextRows(t, b.tenantA, "vault"))

	// The events in the outbox carry ids, never the text.
	var leaked int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.outbox WHERE position('vault'::bytea IN payload) > 0`).Scan(&leaked))
	require.Zero(t, leaked)

	// Another tenant is unaffected: plain rows, keyword search.
	mb := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "The vault of tenant B is plain"})
	var textB string
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text FROM memory.memories WHERE id = $1`, mb.GetId()).Scan(&textB))
	require.Equal(t, "The vault of tenant B is plain", textB)
	kw, err := b.client.SearchMemories(as("admin-b"), &memoryv1.SearchMemoriesRequest{Query: "vault", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	require.NoError(t, err)
	require.Equal(t, []string{mb.GetId()}, ids(kw.GetResults()))
}

// TestSealedTextFailsClosed moves ciphertexts between rows and tenants and
// tampers with them in the database: a read fails, and never returns the text
// of the row the ciphertext came from.
func TestSealedTextFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	b.setEncryption(t, true)
	m1 := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "first secret of user one"})
	m2 := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "second secret of user one"})
	m3 := b.create(t, "user2", &memoryv1.CreateMemoryRequest{Text: "secret of user two"})
	// Tenant B turns encryption on too: its rows are sealed under its own keys.
	_, err := b.client.UpdateMemorySettings(as("admin-b"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{EncryptText: true}, UpdateMask: mask("encrypt_text"),
	})
	require.NoError(t, err)
	mb := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "secret of tenant B"})

	readFails := func(key, id, other string) {
		t.Helper()
		got, err := b.client.GetMemory(as(key), &memoryv1.GetMemoryRequest{Id: id})
		require.Error(t, err, "read %v", got)
		require.NotContains(t, err.Error(), other)
		_, err = b.client.ListMemories(as(key), &memoryv1.ListMemoriesRequest{})
		require.Error(t, err)
		require.NotContains(t, err.Error(), other)
	}
	copySealed := func(from, to string) {
		t.Helper()
		_, err := b.admin.Exec(ctx, `UPDATE memory.memories SET text_sealed = (SELECT text_sealed FROM memory.memories WHERE id = $1) WHERE id = $2`, from, to)
		require.NoError(t, err)
	}
	var orig2 []byte
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text_sealed FROM memory.memories WHERE id = $1`, m2.GetId()).Scan(&orig2))

	// Another row of the same identity.
	copySealed(m1.GetId(), m2.GetId())
	readFails("user1", m2.GetId(), "first secret")
	// Another identity's row: moved to user2's memory.
	copySealed(m1.GetId(), m3.GetId())
	readFails("user2", m3.GetId(), "first secret")
	// Another tenant's row.
	copySealed(m1.GetId(), mb.GetId())
	readFails("admin-b", mb.GetId(), "first secret")

	// A flipped byte.
	tampered := bytes.Clone(orig2)
	tampered[len(tampered)-1] ^= 1
	_, err = b.admin.Exec(ctx, `UPDATE memory.memories SET text_sealed = $1 WHERE id = $2`, tampered, m2.GetId())
	require.NoError(t, err)
	readFails("user1", m2.GetId(), "second secret")

	// Put back, the original opens again.
	_, err = b.admin.Exec(ctx, `UPDATE memory.memories SET text_sealed = $1 WHERE id = $2`, orig2, m2.GetId())
	require.NoError(t, err)
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m2.GetId()})
	require.NoError(t, err)
	require.Equal(t, "second secret of user one", got.GetMemory().GetText())

	// A version's ciphertext is bound to its version as well.
	_, err = b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m2.GetId(), Text: "second secret, edited"}, UpdateMask: mask("text"),
	})
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, `UPDATE memory.memory_versions SET text_sealed =
  (SELECT text_sealed FROM memory.memory_versions WHERE memory_id = $1 AND version = 2) WHERE memory_id = $1 AND version = 1`, m2.GetId())
	require.NoError(t, err)
	_, err = b.client.ListMemoryVersions(as("user1"), &memoryv1.ListMemoryVersionsRequest{Id: m2.GetId()})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "edited")

	// Erasure: destroying user1's data key shreds the text of its memories; a
	// read says so, and a hard delete still works.
	_, err = b.keys.Destroy(ctx, keyring.Identity(b.tenantA, b.user1))
	require.NoError(t, err)
	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m2.GetId()})
	requireCode(t, err, codes.FailedPrecondition)
	require.Contains(t, err.Error(), "erased")
	_, err = b.client.DeleteMemory(as("user1"), &memoryv1.DeleteMemoryRequest{Id: m2.GetId(), Hard: true})
	require.NoError(t, err)
}

// TestEncryptionConversion turns encryption on for a tenant with plain memories,
// then off again: the sweeper seals the existing rows, then opens them back.
func TestEncryptionConversion(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true, cfg: Config{ConversionSettle: time.Millisecond}})
	ctx := context.Background()
	var mems []*memoryv1.Memory
	for _, text := range []string{"orchid greenhouse humidity notes", "orchid repotting schedule", "fern watering"} {
		mems = append(mems, b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: text}))
	}
	_, err := b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: mems[0].GetId(), Text: "orchid greenhouse humidity at 70%"}, UpdateMask: mask("text"),
	})
	require.NoError(t, err)
	plain := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "orchid of tenant B"})
	require.Positive(t, b.plaintextRows(t, b.tenantA, "orchid"))

	b.setEncryption(t, true)
	svc := b.mod.Service()
	require.NoError(t, svc.convertTexts(ctx)) // seals the rows
	require.Zero(t, b.plaintextRows(t, b.tenantA, "orchid"))
	require.Zero(t, b.plaintextRows(t, b.tenantA, "fern"))
	require.NoError(t, svc.convertTexts(ctx)) // finds nothing left: done
	st, err := b.client.GetMemorySettings(as("admin-a"), &memoryv1.GetMemorySettingsRequest{})
	require.NoError(t, err)
	require.False(t, st.GetSettings().GetEncryptionInProgress())
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: mems[0].GetId()})
	require.NoError(t, err)
	require.Equal(t, "orchid greenhouse humidity at 70%", got.GetMemory().GetText())
	hist, err := b.client.ListMemoryVersions(as("user1"), &memoryv1.ListMemoryVersionsRequest{Id: mems[0].GetId()})
	require.NoError(t, err)
	require.Equal(t, "orchid greenhouse humidity notes", hist.GetVersions()[1].GetText())
	// Tenant B was not touched.
	var textB string
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT text FROM memory.memories WHERE id = $1`, plain.GetId()).Scan(&textB))
	require.Equal(t, "orchid of tenant B", textB)

	// The keyring's re-encryption job knows the sealed fields: after a rotation
	// of user1's key it re-seals every row, and they still open.
	_, err = b.keys.Rotate(ctx, keyring.Identity(b.tenantA, b.user1))
	require.NoError(t, err)
	rep, err := b.keys.Reencrypt(ctx)
	require.NoError(t, err)
	resealed := map[string]int64{}
	for _, f := range rep.Fields {
		if f.Field == "memory.memories.text_sealed" || f.Field == "memory.memory_versions.text_sealed" {
			require.Zero(t, f.Failed, "%+v", f)
			resealed[f.Field] = f.Resealed
		}
	}
	require.Equal(t, map[string]int64{"memory.memories.text_sealed": 3, "memory.memory_versions.text_sealed": 4}, resealed)
	got, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: mems[0].GetId()})
	require.NoError(t, err)
	require.Equal(t, "orchid greenhouse humidity at 70%", got.GetMemory().GetText())

	// Re-embedding after a model change opens the sealed texts (and needs the keyring).
	var embedded []string
	embed := func(_ context.Context, texts []string) (string, [][]float32, error) {
		embedded = append(embedded, texts...)
		return "new-model", b.embedder.e.Embed(texts), nil
	}
	_, err = Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "new-model", Embed: embed})
	require.Error(t, err, "sealed texts without the keyring")
	require.Empty(t, embedded)
	res, err := Reembed(ctx, b.db.Pool, b.tenantA, ReembedOptions{Model: "new-model", Embed: embed, Keys: b.keys})
	require.NoError(t, err)
	require.Equal(t, 3, res.Embedded)
	require.ElementsMatch(t, []string{"orchid greenhouse humidity at 70%", "orchid repotting schedule", "fern watering"}, embedded)

	// Off again: the rows are opened back, and keyword search works once done.
	st2 := b.setEncryption(t, false)
	require.True(t, st2.GetEncryptionInProgress())
	_, err = b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "orchid", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	requireCode(t, err, codes.FailedPrecondition)
	require.NoError(t, svc.convertTexts(ctx))
	require.NoError(t, svc.convertTexts(ctx))
	var sealedLeft int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM memory.memories WHERE text_sealed IS NOT NULL)
  + (SELECT count(*) FROM memory.memory_versions WHERE text_sealed IS NOT NULL)`).Scan(&sealedLeft))
	require.Zero(t, sealedLeft)
	kw, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "orchid", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{mems[0].GetId(), mems[1].GetId()}, ids(kw.GetResults()))
}

// TestRestoreWindow: soft-deleted memories are purged (hard-deleted, history
// included) when their tenant's restore window ends; restored ones are not, and
// a window of 0 keeps them.
func TestRestoreWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	var ms []*memoryv1.Memory
	for _, text := range []string{"purged at the window's end", "restored in time", "kept by a window of 0 days"} {
		m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: text})
		_, err := b.client.DeleteMemory(as("user1"), &memoryv1.DeleteMemoryRequest{Id: m.GetId()})
		require.NoError(t, err)
		ms = append(ms, m)
	}
	other := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "tenant B, deleted"})
	_, err := b.client.DeleteMemory(as("admin-b"), &memoryv1.DeleteMemoryRequest{Id: other.GetId()})
	require.NoError(t, err)

	var days float64
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT extract(epoch FROM purge_time - delete_time) / 86400 FROM memory.deletions WHERE memory_id = $1`,
		ms[0].GetId()).Scan(&days))
	require.InDelta(t, 30, days, 1e-9, "the default window")

	_, err = b.client.RestoreMemory(as("user1"), &memoryv1.RestoreMemoryRequest{Id: ms[1].GetId()})
	require.NoError(t, err)
	_, err = b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{RestoreWindowDays: 2},
	})
	require.NoError(t, err)
	// The memory deleted 3 days ago (moved back in time here) is past the new window.
	_, err = b.admin.Exec(ctx, `UPDATE memory.deletions SET delete_time = delete_time - interval '3 days',
  purge_time = purge_time - interval '3 days' WHERE memory_id = $1`, ms[0].GetId())
	require.NoError(t, err)
	// Past its window, a memory is not restored any more, even before the purge.
	_, err = b.client.RestoreMemory(as("user1"), &memoryv1.RestoreMemoryRequest{Id: ms[0].GetId()})
	requireCode(t, err, codes.FailedPrecondition)
	require.Contains(t, err.Error(), "restore window")
	// Tenant B's deletion is due as well, under its own (default) window.
	_, err = b.admin.Exec(ctx, `UPDATE memory.deletions SET purge_time = now() - interval '1 second' WHERE memory_id = $1`, other.GetId())
	require.NoError(t, err)

	// The restored memory shows that restoring left the queue: force it due.
	_, err = b.admin.Exec(ctx, `INSERT INTO memory.deletions (memory_id, tenant_id, delete_time, purge_time)
  VALUES ($1, $2, now() - interval '40 days', now() - interval '10 days')`, ms[1].GetId(), b.tenantA)
	require.NoError(t, err)

	require.NoError(t, b.mod.Service().purgeDeleted(ctx))

	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: ms[0].GetId(), IncludeDeleted: true})
	requireCode(t, err, codes.NotFound)
	var left int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM memory.memories WHERE id = ANY($1::uuid[]))
  + (SELECT count(*) FROM memory.memory_versions WHERE memory_id = ANY($1::uuid[]))`, []string{ms[0].GetId(), other.GetId()}).Scan(&left))
	require.Zero(t, left, "purged with their history")
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: ms[1].GetId()})
	require.NoError(t, err, "restored, so not purged")
	require.Nil(t, got.GetMemory().GetDeleteTime())
	got, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: ms[2].GetId(), IncludeDeleted: true})
	require.NoError(t, err, "deleted within the window")
	require.NotNil(t, got.GetMemory().GetDeleteTime())

	// A window of 0 keeps soft-deleted memories whatever their age.
	_, err = b.client.UpdateMemorySettings(as("admin-a"), &memoryv1.UpdateMemorySettingsRequest{
		Settings: &memoryv1.MemorySettings{}, UpdateMask: mask("restore_window_days"),
	})
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, `UPDATE memory.deletions SET delete_time = delete_time - interval '10 years' WHERE memory_id = $1`, ms[2].GetId())
	require.NoError(t, err)
	var purge *time.Time
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT purge_time FROM memory.deletions WHERE memory_id = $1`, ms[2].GetId()).Scan(&purge))
	require.Nil(t, purge)
	require.NoError(t, b.mod.Service().purgeDeleted(ctx))
	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: ms[2].GetId(), IncludeDeleted: true})
	require.NoError(t, err)

	// The purge was announced as a hard delete.
	var purged int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.outbox WHERE subject LIKE '%memory.deleted%'
  AND position('"purged":true'::bytea IN payload) > 0`).Scan(&purged))
	require.Equal(t, 2, purged)
}
