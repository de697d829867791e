package usage

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/apierr"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// exportPage is how many rows one chunk of an export carries.
const exportPage = 1000

// ExportUsage streams daily rollups or raw events as CSV, one chunk per page of
// rows, each read in its own short transaction (keyset paging), so a large export
// holds no transaction open.
func (s *usageServer) ExportUsage(req *usagev1.ExportUsageRequest, stream grpc.ServerStreamingServer[httpbody.HttpBody]) error {
	ctx := stream.Context()
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	end := today(s.svc.now())
	if req.GetEndDate() != "" {
		if end, err = parseDay("end_date", req.GetEndDate()); err != nil {
			return err
		}
	}
	start := time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC)
	if req.GetStartDate() != "" {
		if start, err = parseDay("start_date", req.GetStartDate()); err != nil {
			return err
		}
	}
	if start.After(end) {
		return apierr.Field("start_date", "must not be after end_date")
	}
	var identity *uuid.UUID
	if req.GetIdentityId() != "" {
		id, err := uuid.Parse(req.GetIdentityId())
		if err != nil {
			return apierr.Field("identity_id", "must be a UUID")
		}
		identity = &id
	}
	kind := "daily"
	if req.GetKind() == usagev1.UsageExportKind_USAGE_EXPORT_KIND_EVENTS {
		kind = "events"
	}
	name := fmt.Sprintf("usage-%s-%s-%s.csv", kind, start.Format(time.DateOnly), end.Format(time.DateOnly))
	_ = stream.SendHeader(metadata.Pairs("content-disposition", `attachment; filename="`+name+`"`))

	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	send := func() error {
		w.Flush()
		if err := w.Error(); err != nil {
			return apierr.Internal(err)
		}
		data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if err := stream.Send(&httpbody.HttpBody{ContentType: "text/csv", Data: bytes.Clone(data)}); err != nil {
			return err
		}
		buf.Reset()
		return nil
	}
	if kind == "daily" {
		_ = w.Write([]string{"date", "type", "identity_id", "quantity", "event_count"})
		f := store.DailyFilter{Type: req.GetType(), IdentityID: identity, Start: start, End: end}
		var after *store.DailyCursor
		for {
			var rows []store.Daily
			err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
				rows, err = tx.ListDaily(ctx, f, after, exportPage)
				return err
			})
			if err != nil {
				return err
			}
			for _, r := range rows {
				id := ""
				if r.IdentityID != uuid.Nil {
					id = r.IdentityID.String()
				}
				_ = w.Write([]string{r.Day.Format(time.DateOnly), r.Type, id, strconv.FormatInt(r.Quantity, 10), strconv.FormatInt(r.EventCount, 10)})
			}
			if err := send(); err != nil {
				return err
			}
			if len(rows) < exportPage {
				return nil
			}
			last := rows[len(rows)-1]
			after = &store.DailyCursor{Day: last.Day, Type: last.Type, IdentityID: last.IdentityID}
		}
	}
	_ = w.Write([]string{"id", "time", "type", "quantity", "identity_id", "source", "properties"})
	endTime := end.AddDate(0, 0, 1)
	f := store.EventFilter{Type: req.GetType(), IdentityID: identity, Start: &start, End: &endTime}
	var after *store.EventCursor
	for {
		var rows []store.Event
		err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			rows, err = tx.ListEvents(ctx, f, after, exportPage)
			return err
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			id := ""
			if r.IdentityID != uuid.Nil {
				id = r.IdentityID.String()
			}
			_ = w.Write([]string{r.ID, r.Time.Format(time.RFC3339Nano), r.Type, strconv.FormatInt(r.Quantity, 10), id, r.Source, string(r.Properties)})
		}
		if err := send(); err != nil {
			return err
		}
		if len(rows) < exportPage {
			return nil
		}
		last := rows[len(rows)-1]
		after = &store.EventCursor{Time: last.Time, Source: last.Source, ID: last.ID}
	}
}
