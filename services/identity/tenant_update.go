package identity

import (
	"context"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/apierr"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

const (
	maxTenantNameLen = 200
	// minPasswordMinLength is the lowest password minimum a tenant may set: below
	// it passwords are guessable whatever else the policy checks.
	minPasswordMinLength = 8
	maxPasswordMinLength = 256
	maxSessionsCap       = 10000
)

// tenantChange is what an UpdateTenant request changes, checked.
type tenantChange struct {
	setName bool
	name    string
	// settings lists the setting fields to copy from the request's settings.
	settings []string
}

// settingPaths are the settings an update mask may name one by one.
var settingPaths = []string{"self_registration", "mfa_required", "password_min_length", "max_sessions_per_identity", "sensitive_claims",
	"deleted_identity_retention_days"}

// tenantChangeOf checks the mask and the values it names. An empty mask means the
// name and the settings the tenant sets to something other than false or 0, which
// cannot be told from absent over gRPC; the REST gateway infers the mask from the
// JSON body instead, where they can. Clearing a setting over gRPC names it.
func tenantChangeOf(in *identityv1.Tenant, paths []string) (tenantChange, error) {
	var c tenantChange
	if len(paths) == 0 {
		if in.GetName() != "" {
			paths = append(paths, "name")
		}
		s := in.GetSettings()
		for _, set := range []struct {
			path string
			on   bool
		}{
			{"settings.self_registration", s.GetSelfRegistration()},
			{"settings.mfa_required", s.GetMfaRequired()},
			{"settings.password_min_length", s.GetPasswordMinLength() != 0},
			{"settings.max_sessions_per_identity", s.GetMaxSessionsPerIdentity() != 0},
			{"settings.sensitive_claims", len(s.GetSensitiveClaims()) > 0},
			{"settings.deleted_identity_retention_days", s.GetDeletedIdentityRetentionDays() != 0},
		} {
			if set.on {
				paths = append(paths, set.path)
			}
		}
		if len(paths) == 0 {
			return c, apierr.Field("update_mask", "is empty and the tenant sets no field to change")
		}
	}
	for _, path := range paths {
		switch path {
		case "name":
			if n := utf8.RuneCountInString(in.GetName()); n < 1 || n > maxTenantNameLen || strings.TrimSpace(in.GetName()) == "" {
				return c, apierr.Field("tenant.name", "must be 1 to %d characters, not only spaces", maxTenantNameLen)
			}
			c.setName, c.name = true, in.GetName()
		case "settings":
			c.settings = append(c.settings, settingPaths...)
		case "settings.self_registration", "settings.mfa_required", "settings.password_min_length", "settings.max_sessions_per_identity",
			"settings.sensitive_claims", "settings.deleted_identity_retention_days":
			c.settings = append(c.settings, strings.TrimPrefix(path, "settings."))
		case "id":
			// Names the tenant rather than changing it: the REST gateway infers a
			// PATCH's mask from the body, which may carry the id.
		default:
			return c, apierr.Field("update_mask", "%q cannot be changed; only name, settings and settings.self_registration, settings.mfa_required, settings.password_min_length, settings.max_sessions_per_identity, settings.sensitive_claims, settings.deleted_identity_retention_days can", path)
		}
	}
	s := in.GetSettings()
	for _, f := range c.settings {
		switch f {
		case "password_min_length":
			// 0 keeps meaning "the server default", which is above the floor.
			if v := s.GetPasswordMinLength(); v != 0 && (v < minPasswordMinLength || v > maxPasswordMinLength) {
				return c, apierr.Field("tenant.settings.password_min_length", "must be 0 (the server default, %d) or %d to %d", defaultPasswordMinLength, minPasswordMinLength, maxPasswordMinLength)
			}
		case "max_sessions_per_identity":
			if v := s.GetMaxSessionsPerIdentity(); v < 0 || v > maxSessionsCap {
				return c, apierr.Field("tenant.settings.max_sessions_per_identity", "must be 0 (the server default) or 1 to %d", maxSessionsCap)
			}
		case "deleted_identity_retention_days":
			if v := s.GetDeletedIdentityRetentionDays(); v < 0 || v > maxRetentionDays {
				return c, apierr.Field("tenant.settings.deleted_identity_retention_days", "must be 0 (the server default, %d) or 1 to %d", defaultRetentionDays, maxRetentionDays)
			}
		case "sensitive_claims":
			if err := checkSensitiveNames(s.GetSensitiveClaims()); err != nil {
				return c, err
			}
		}
	}
	if !c.setName && len(c.settings) == 0 {
		return c, apierr.Field("update_mask", "names no field to change")
	}
	return c, nil
}

// apply copies the changed settings from in onto cur.
func (c tenantChange) apply(cur, in *identityv1.TenantSettings) {
	for _, f := range c.settings {
		switch f {
		case "self_registration":
			cur.SelfRegistration = in.GetSelfRegistration()
		case "mfa_required":
			cur.MfaRequired = in.GetMfaRequired()
		case "password_min_length":
			cur.PasswordMinLength = in.GetPasswordMinLength()
		case "max_sessions_per_identity":
			cur.MaxSessionsPerIdentity = in.GetMaxSessionsPerIdentity()
		case "deleted_identity_retention_days":
			cur.DeletedIdentityRetentionDays = in.GetDeletedIdentityRetentionDays()
		case "sensitive_claims":
			cur.SensitiveClaims = slices.Clone(in.GetSensitiveClaims())
		}
	}
}

func (s *tenantServer) UpdateTenant(ctx context.Context, req *identityv1.UpdateTenantRequest) (*identityv1.UpdateTenantResponse, error) {
	own, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetTenant()
	id, err := parseID("tenant.id", in.GetId())
	if err != nil {
		return nil, err
	}
	// The authorizer allowed tenant.update in the caller's own tenant; only the
	// operator reaches others. Another tenant is NOT_FOUND, so its existence does
	// not leak.
	if id != own && !p.IsOperator() {
		return nil, apierr.NotFound("tenant", in.GetId())
	}
	change, err := tenantChangeOf(in, req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	var t *identityv1.Tenant
	err = s.svc.store.InTenant(ctx, id, func(tx *store.Tx) error {
		// The row lock orders concurrent updates, so none loses another's setting.
		cur, err := tx.GetTenantForUpdate(ctx, id)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return apierr.NotFound("tenant", in.GetId())
			}
			return err
		}
		before, err := tenantToProto(cur)
		if err != nil {
			return err
		}
		settings := proto.Clone(before.GetSettings()).(*identityv1.TenantSettings)
		change.apply(settings, in.GetSettings())
		raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(settings)
		if err != nil {
			return apierr.Internal(err)
		}
		params := sqlc.UpdateTenantParams{ID: id, Name: cur.Name, Settings: raw}
		if change.setName {
			params.Name = change.name
		}
		row, err := tx.UpdateTenant(ctx, params)
		if err := store.MapErr(err); err != nil {
			return err
		}
		// Values of newly listed sensitive claims leave the plain claims now, in the
		// same transaction: the setting never claims a protection the data lacks.
		if _, err := s.svc.sealExistingClaims(ctx, tx, id, addedNames(before.GetSettings().GetSensitiveClaims(), settings.GetSensitiveClaims())); err != nil {
			return err
		}
		if t, err = tenantToProto(row); err != nil {
			return err
		}
		return s.svc.emit(ctx, tx, id, "tenant.updated", t.GetId(), t)
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.UpdateTenantResponse{Tenant: t}, nil
}
