package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/pagination"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// SSOConfig configures single sign-on (SsoService).
type SSOConfig struct {
	// CallbackBaseURL is the public base URL of the REST edge, which providers send
	// browsers back to: <base>/v1/sso/callback/{provider} is the redirect URI to
	// register with the provider (default http://127.0.0.1:8080).
	CallbackBaseURL string
	// DefaultTenant (slug or id) is the tenant of StartSsoLogin calls that name
	// none; empty means every call must name its tenant.
	DefaultTenant string
	// AllowedAddresses are CIDRs issuer URLs may reach although they are private or
	// loopback (an on-premises identity provider; tests). Everything else private is
	// refused, so a tenant admin cannot make the server fetch internal URLs.
	AllowedAddresses []string
	// StateTTL is how long a started sign-in may take to come back (default 10m).
	StateTTL time.Duration
	// HTTPClient replaces the guarded client for provider calls (tests only).
	HTTPClient *http.Client
}

// Defaults of SSOConfig and the presets.
const (
	defaultSSOCallbackBase = "http://127.0.0.1:8080"
	defaultSSOStateTTL     = 10 * time.Minute
	// ssoCodeTTL is the life of the one-time code an application exchanges.
	ssoCodeTTL    = time.Minute
	googleIssuer  = "https://accounts.google.com"
	presetGeneric = "generic"
	presetGoogle  = "google"
	methodSSO     = "sso"
)

var defaultSSOScopes = []string{"openid", "email", "profile"}

// ssoState is the SSO part of the service.
type ssoState struct {
	callbackBase  string
	defaultTenant string
	stateTTL      time.Duration
	providers     *oidcProviders
	// cookiePath and secureCookie shape the cookie that binds a sign-in to its
	// browser (sso_browser.go).
	cookiePath   string
	secureCookie bool
}

// initSSO builds the SSO state; nothing is fetched until a provider is configured
// or used.
func (s *Service) initSSO(cfg SSOConfig) error {
	base := strings.TrimRight(cfg.CallbackBaseURL, "/")
	if base == "" {
		base = defaultSSOCallbackBase
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("identity: sso callback base URL %q must be an absolute http(s) URL", cfg.CallbackBaseURL)
	}
	ttl := cfg.StateTTL
	if ttl <= 0 {
		ttl = defaultSSOStateTTL
	}
	client := cfg.HTTPClient
	if client == nil {
		policy, err := newSSOAddressPolicy(cfg.AllowedAddresses)
		if err != nil {
			return err
		}
		client = policy.httpClient()
	}
	s.sso = &ssoState{callbackBase: base, defaultTenant: cfg.DefaultTenant, stateTTL: ttl, providers: newOIDCProviders(client)}
	s.sso.cookiePath, s.sso.secureCookie = cookieSettings(base)
	return s.registerSSOSecrets()
}

// callbackURL is the redirect URI registered with the provider.
func (st *ssoState) callbackURL(provider string) string {
	return st.callbackBase + "/v1/sso/callback/" + url.PathEscape(provider)
}

// registerSSO registers SsoService on s.
func registerSSO(s grpc.ServiceRegistrar, svc *Service) {
	identityv1.RegisterSsoServiceServer(s, &ssoServer{svc: svc})
}

// ssoServer implements SsoService.
type ssoServer struct {
	identityv1.UnimplementedSsoServiceServer
	svc *Service
}

// fieldSSOSecret names the sealed client secret column; it is bound into every
// ciphertext, so never rename it.
const fieldSSOSecret = "identity.sso_providers.client_secret_sealed"

// ssoSecretRef seals a client secret under its tenant's data key (erasing the
// tenant shreds it), bound to the provider row: a sealed secret copied to another
// provider does not open.
func ssoSecretRef(tenant, provider uuid.UUID) envelope.Ref {
	return envelope.Ref{Field: fieldSSOSecret, Scope: envelope.Tenant(tenant), Row: provider[:]}
}

var presetNames = map[identityv1.SsoProviderPreset]string{
	identityv1.SsoProviderPreset_SSO_PROVIDER_PRESET_UNSPECIFIED: presetGeneric,
	identityv1.SsoProviderPreset_SSO_PROVIDER_PRESET_GENERIC:     presetGeneric,
	identityv1.SsoProviderPreset_SSO_PROVIDER_PRESET_GOOGLE:      presetGoogle,
}

func ssoProviderToProto(r sqlc.IdentitySsoProvider) *identityv1.SsoProvider {
	preset := identityv1.SsoProviderPreset_SSO_PROVIDER_PRESET_GENERIC
	if r.Preset == presetGoogle {
		preset = identityv1.SsoProviderPreset_SSO_PROVIDER_PRESET_GOOGLE
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return &identityv1.SsoProvider{
		Id: r.ID.String(), TenantId: r.TenantID.String(), Name: r.Name, DisplayName: r.DisplayName,
		Preset: preset, IssuerUrl: r.IssuerUrl, ClientId: r.ClientID, HasClientSecret: len(r.ClientSecretSealed) > 0,
		Scopes: nonNil(r.Scopes),
		ClaimMapping: &identityv1.SsoClaimMapping{
			ExternalId: r.ClaimExternalID, Email: r.ClaimEmail, Name: r.ClaimName, Roles: r.ClaimRoles,
		},
		AllowedEmailDomains: nonNil(r.AllowedEmailDomains), JitCreate: r.JitCreate, DefaultRole: r.DefaultRole,
		RedirectUrls: nonNil(r.RedirectUrls), AllowUnverifiedEmail: r.AllowUnverifiedEmail, IsActive: r.IsActive,
		AllowedRoles: nonNil(r.AllowedRoles),
		CreateTime:   timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
}

// providerSettings is what create and update check before storing.
type providerSettings struct {
	issuer, clientID      string
	scopes, domains, urls []string
	defaultRole           string
	allowedRoles          []string
}

// normalize fills defaults and checks what protovalidate cannot: "openid" is
// always requested, domains compare in lower case, redirect URLs must be absolute
// http(s) URLs without fragments, and nobody configures a default role above
// their own.
func (ps *providerSettings) normalize(p *auth.Principal, preset string) error {
	ps.issuer = strings.TrimSpace(ps.issuer)
	if ps.issuer == "" && preset == presetGoogle {
		ps.issuer = googleIssuer
	}
	if u, err := url.Parse(ps.issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return apierr.Field("issuer_url", "must be an absolute http(s) URL")
	}
	if len(ps.scopes) == 0 {
		ps.scopes = slices.Clone(defaultSSOScopes)
	}
	if !slices.Contains(ps.scopes, "openid") {
		ps.scopes = append([]string{"openid"}, ps.scopes...)
	}
	for i, d := range ps.domains {
		ps.domains[i] = strings.ToLower(strings.TrimSpace(d))
	}
	for _, raw := range ps.urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			return apierr.Field("redirect_urls", "%q must be an absolute http(s) URL without a fragment", raw)
		}
	}
	if ps.defaultRole == "" {
		ps.defaultRole = auth.RoleUser
	}
	seen := map[string]bool{}
	roles := []string{}
	for _, r := range ps.allowedRoles {
		r = strings.ToLower(strings.TrimSpace(r))
		if !roleName(r) {
			return apierr.Field("allowed_roles", "%q is not a role name (^[a-z][a-z0-9_-]{0,63}$)", r)
		}
		if !seen[r] {
			seen[r] = true
			roles = append(roles, r)
		}
	}
	ps.allowedRoles = roles
	// Whoever configures the provider vouches for what its claims may give.
	return checkGrant(p, append([]string{ps.defaultRole}, ps.allowedRoles...)...)
}

// checkDiscovery fetches the issuer's discovery document, so a provider that
// cannot be used is refused when it is configured rather than at the first
// sign-in.
func (s *Service) checkDiscovery(ctx context.Context, issuer string) error {
	if _, err := s.sso.providers.discover(ctx, issuer); err != nil {
		return apierr.FailedPrecondition("issuer_url %q: the OpenID Connect discovery document could not be used: %v", issuer, err)
	}
	return nil
}

// registerSSOSecrets declares the sealed column to the service's Sealer, so the
// keyring's re-encryption job visits it. Values sealed before the keyring (by the
// token sealer, bound to the same row bytes) still open through Legacy.
func (s *Service) registerSSOSecrets() error {
	if s.sealer == nil {
		return nil
	}
	old := s.tokens.sealer
	if l, ok := s.sealer.(legacySealer); ok {
		// Without a keyring the service seals per field with the older keys.
		l[fieldSSOSecret] = old
		return nil
	}
	err := s.sealer.Register(envelope.Field{
		Name: fieldSSOSecret, Table: "identity.sso_providers", Column: "client_secret_sealed", Key: "id", Tenant: "tenant_id",
		Legacy: func(ref envelope.Ref, sealed []byte) ([]byte, error) { return old.Open(sealed, ref.Row) },
	})
	if err != nil {
		return fmt.Errorf("identity: register sso secrets: %w", err)
	}
	return nil
}

func (s *Service) sealClientSecret(ctx context.Context, tenant, id uuid.UUID, secret string) ([]byte, error) {
	if secret == "" {
		return nil, nil
	}
	ref := ssoSecretRef(tenant, id)
	var sealed []byte
	var err error
	if s.sealer != nil {
		sealed, err = s.sealer.Seal(ctx, ref, []byte(secret))
	} else {
		sealed, err = s.tokens.sealer.Seal([]byte(secret), ref.Row)
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("seal sso client secret: %w", err))
	}
	return sealed, nil
}

func (s *Service) openClientSecret(ctx context.Context, r sqlc.IdentitySsoProvider) (string, error) {
	if len(r.ClientSecretSealed) == 0 {
		return "", nil
	}
	ref := ssoSecretRef(r.TenantID, r.ID)
	var plain []byte
	var err error
	if s.sealer != nil {
		plain, err = s.sealer.Open(ctx, ref, r.ClientSecretSealed)
	} else {
		plain, err = s.tokens.sealer.Open(r.ClientSecretSealed, ref.Row)
	}
	if err != nil {
		return "", apierr.Internal(fmt.Errorf("open client secret of sso provider %s: %w", r.ID, err))
	}
	return string(plain), nil
}

func (s *ssoServer) CreateSsoProvider(ctx context.Context, req *identityv1.CreateSsoProviderRequest) (*identityv1.CreateSsoProviderResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	preset := presetNames[req.GetPreset()]
	ps := providerSettings{
		issuer: req.GetIssuerUrl(), clientID: req.GetClientId(), scopes: slices.Clone(req.GetScopes()),
		domains: slices.Clone(req.GetAllowedEmailDomains()), urls: req.GetRedirectUrls(), defaultRole: req.GetDefaultRole(),
		allowedRoles: slices.Clone(req.GetAllowedRoles()),
	}
	if err := ps.normalize(p, preset); err != nil {
		return nil, err
	}
	if err := s.svc.checkDiscovery(ctx, ps.issuer); err != nil {
		return nil, err
	}
	cm := req.GetClaimMapping()
	var resp *identityv1.CreateSsoProviderResponse
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		resp, err = idempotent(ctx, tx, tenant, "CreateSsoProvider", req.GetIdempotencyKey(), req, &identityv1.CreateSsoProviderResponse{},
			func() (*identityv1.CreateSsoProviderResponse, error) {
				id := newID()
				sealed, err := s.svc.sealClientSecret(ctx, tenant, id, req.GetClientSecret())
				if err != nil {
					return nil, err
				}
				row, err := tx.CreateSsoProvider(ctx, sqlc.CreateSsoProviderParams{
					ID: id, TenantID: tenant, Name: req.GetName(), DisplayName: req.GetDisplayName(), Preset: preset,
					IssuerUrl: ps.issuer, ClientID: ps.clientID, ClientSecretSealed: sealed, Scopes: ps.scopes,
					ClaimExternalID: cm.GetExternalId(), ClaimEmail: cm.GetEmail(), ClaimName: cm.GetName(), ClaimRoles: cm.GetRoles(),
					AllowedEmailDomains: nonNilStrings(ps.domains), JitCreate: req.GetJitCreate(), DefaultRole: ps.defaultRole,
					RedirectUrls: nonNilStrings(ps.urls), AllowUnverifiedEmail: req.GetAllowUnverifiedEmail(),
					AllowedRoles: nonNilStrings(ps.allowedRoles),
				})
				if err := store.MapErr(err); err != nil {
					if errors.Is(err, store.ErrAlreadyExists) {
						return nil, apierr.AlreadyExists("an SSO provider named %q exists", req.GetName())
					}
					return nil, err
				}
				out := ssoProviderToProto(row)
				if err := s.svc.emit(ctx, tx, tenant, "sso.provider.created", out.GetId(), out); err != nil {
					return nil, err
				}
				return &identityv1.CreateSsoProviderResponse{SsoProvider: out}, nil
			})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// loadSsoProvider reads a provider of the transaction's tenant; another tenant's
// id is NOT_FOUND like a missing one.
func loadSsoProvider(ctx context.Context, tx *store.Tx, rawID string, forUpdate bool) (sqlc.IdentitySsoProvider, error) {
	id, err := parseID("id", rawID)
	if err != nil {
		return sqlc.IdentitySsoProvider{}, err
	}
	var row sqlc.IdentitySsoProvider
	if forUpdate {
		row, err = tx.GetSsoProviderForUpdate(ctx, id)
	} else {
		row, err = tx.GetSsoProvider(ctx, id)
	}
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return row, apierr.NotFound("sso provider", rawID)
		}
		return row, err
	}
	return row, nil
}

func (s *ssoServer) GetSsoProvider(ctx context.Context, req *identityv1.GetSsoProviderRequest) (*identityv1.GetSsoProviderResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentitySsoProvider
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = loadSsoProvider(ctx, tx, req.GetId(), false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.GetSsoProviderResponse{SsoProvider: ssoProviderToProto(row)}, nil
}

func (s *ssoServer) ListSsoProviders(ctx context.Context, req *identityv1.ListSsoProvidersRequest) (*identityv1.ListSsoProvidersResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("sso_providers")
	params := sqlc.ListSsoProvidersParams{PageLimit: pagination.Size(req.GetPageSize()) + 1}
	if req.GetPageToken() != "" {
		after, err := pagination.Decode(req.GetPageToken(), fp)
		if err != nil {
			return nil, err
		}
		params.AfterName = &after
	}
	var rows []sqlc.IdentitySsoProvider
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListSsoProviders(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListSsoProvidersResponse{SsoProviders: []*identityv1.SsoProvider{}}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].Name, fp)
	}
	for _, r := range rows {
		resp.SsoProviders = append(resp.SsoProviders, ssoProviderToProto(r))
	}
	return resp, nil
}

// ssoUpdatable are the update_mask paths UpdateSsoProvider accepts.
var ssoUpdatable = []string{
	"name", "display_name", "issuer_url", "client_id", "client_secret", "scopes", "claim_mapping",
	"allowed_email_domains", "jit_create", "default_role", "redirect_urls", "allow_unverified_email", "is_active",
	"allowed_roles",
}

// ssoUpdatePaths is the update mask, or with none, every field the request sets
// (false booleans and empty lists cannot be told from "not set" then: name them in
// update_mask to clear them).
func ssoUpdatePaths(req *identityv1.UpdateSsoProviderRequest) ([]string, error) {
	if paths := req.GetUpdateMask().GetPaths(); len(paths) > 0 {
		for _, path := range paths {
			field, _, _ := strings.Cut(path, ".")
			if !slices.Contains(ssoUpdatable, field) {
				return nil, apierr.Field("update_mask", "%q cannot be updated; updatable: %s", path, strings.Join(ssoUpdatable, ", "))
			}
		}
		return paths, nil
	}
	in := req.GetSsoProvider()
	set := map[string]bool{
		"name": in.GetName() != "", "display_name": in.GetDisplayName() != "", "issuer_url": in.GetIssuerUrl() != "",
		"client_id": in.GetClientId() != "", "client_secret": in.GetClientSecret() != "", "scopes": len(in.GetScopes()) > 0,
		"claim_mapping": in.GetClaimMapping() != nil, "allowed_email_domains": len(in.GetAllowedEmailDomains()) > 0,
		"jit_create": in.GetJitCreate(), "default_role": in.GetDefaultRole() != "", "redirect_urls": len(in.GetRedirectUrls()) > 0,
		"allow_unverified_email": in.GetAllowUnverifiedEmail(), "is_active": in.GetIsActive(),
		"allowed_roles": len(in.GetAllowedRoles()) > 0,
	}
	var paths []string
	for _, f := range ssoUpdatable {
		if set[f] {
			paths = append(paths, f)
		}
	}
	return paths, nil
}

func (s *ssoServer) UpdateSsoProvider(ctx context.Context, req *identityv1.UpdateSsoProviderRequest) (*identityv1.UpdateSsoProviderResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := ssoUpdatePaths(req)
	if err != nil {
		return nil, err
	}
	in := req.GetSsoProvider()
	if slices.Contains(paths, "name") && !ssoNamePattern(in.GetName()) {
		return nil, apierr.Field("sso_provider.name", "must be a slug of lower-case letters, digits and dashes")
	}
	// Discovery is a network call: made before the transaction, so no row lock or
	// connection is held while the issuer answers.
	if slices.Contains(paths, "issuer_url") && in.GetIssuerUrl() != "" {
		if err := s.svc.checkDiscovery(ctx, in.GetIssuerUrl()); err != nil {
			return nil, err
		}
	}
	var out *identityv1.SsoProvider
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadSsoProvider(ctx, tx, in.GetId(), true)
		if err != nil {
			return err
		}
		next := sqlc.UpdateSsoProviderParams{
			ID: cur.ID, Name: cur.Name, DisplayName: cur.DisplayName, IssuerUrl: cur.IssuerUrl, ClientID: cur.ClientID,
			ClientSecretSealed: cur.ClientSecretSealed, Scopes: cur.Scopes, ClaimExternalID: cur.ClaimExternalID,
			ClaimEmail: cur.ClaimEmail, ClaimName: cur.ClaimName, ClaimRoles: cur.ClaimRoles,
			AllowedEmailDomains: cur.AllowedEmailDomains, JitCreate: cur.JitCreate, DefaultRole: cur.DefaultRole,
			RedirectUrls: cur.RedirectUrls, AllowUnverifiedEmail: cur.AllowUnverifiedEmail, IsActive: cur.IsActive,
			AllowedRoles: cur.AllowedRoles,
		}
		for _, path := range paths {
			field, sub, _ := strings.Cut(path, ".")
			cm := in.GetClaimMapping()
			switch field {
			case "name":
				next.Name = in.GetName()
			case "display_name":
				next.DisplayName = in.GetDisplayName()
			case "issuer_url":
				next.IssuerUrl = in.GetIssuerUrl()
			case "client_id":
				if in.GetClientId() == "" {
					return apierr.Field("sso_provider.client_id", "must not be empty")
				}
				next.ClientID = in.GetClientId()
			case "client_secret":
				if next.ClientSecretSealed, err = s.svc.sealClientSecret(ctx, tenant, cur.ID, in.GetClientSecret()); err != nil {
					return err
				}
			case "scopes":
				next.Scopes = slices.Clone(in.GetScopes())
			case "claim_mapping":
				if sub == "" || sub == "external_id" {
					next.ClaimExternalID = cm.GetExternalId()
				}
				if sub == "" || sub == "email" {
					next.ClaimEmail = cm.GetEmail()
				}
				if sub == "" || sub == "name" {
					next.ClaimName = cm.GetName()
				}
				if sub == "" || sub == "roles" {
					next.ClaimRoles = cm.GetRoles()
				}
			case "allowed_email_domains":
				next.AllowedEmailDomains = slices.Clone(in.GetAllowedEmailDomains())
			case "jit_create":
				next.JitCreate = in.GetJitCreate()
			case "default_role":
				next.DefaultRole = in.GetDefaultRole()
			case "redirect_urls":
				next.RedirectUrls = slices.Clone(in.GetRedirectUrls())
			case "allow_unverified_email":
				next.AllowUnverifiedEmail = in.GetAllowUnverifiedEmail()
			case "is_active":
				next.IsActive = in.GetIsActive()
			case "allowed_roles":
				next.AllowedRoles = slices.Clone(in.GetAllowedRoles())
			}
		}
		ps := providerSettings{
			issuer: next.IssuerUrl, clientID: next.ClientID, scopes: next.Scopes, domains: next.AllowedEmailDomains,
			urls: next.RedirectUrls, defaultRole: next.DefaultRole, allowedRoles: next.AllowedRoles,
		}
		if err := ps.normalize(p, cur.Preset); err != nil {
			return err
		}
		next.IssuerUrl, next.Scopes, next.AllowedEmailDomains, next.DefaultRole = ps.issuer, ps.scopes, nonNilStrings(ps.domains), ps.defaultRole
		next.RedirectUrls = nonNilStrings(next.RedirectUrls)
		next.AllowedRoles = nonNilStrings(ps.allowedRoles)
		row, err := tx.UpdateSsoProvider(ctx, next)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return apierr.AlreadyExists("an SSO provider named %q exists", next.Name)
			}
			return err
		}
		out = ssoProviderToProto(row)
		return s.svc.emit(ctx, tx, tenant, "sso.provider.updated", out.GetId(), out)
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.UpdateSsoProviderResponse{SsoProvider: out}, nil
}

func ssoNamePattern(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i, c := range name {
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0)
		if !ok {
			return false
		}
	}
	return true
}

func (s *ssoServer) DeleteSsoProvider(ctx context.Context, req *identityv1.DeleteSsoProviderRequest) (*identityv1.DeleteSsoProviderResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadSsoProvider(ctx, tx, req.GetId(), true)
		if err != nil {
			return err
		}
		row, err := tx.DeleteSsoProvider(ctx, cur.ID)
		if err != nil {
			return err
		}
		out := ssoProviderToProto(row)
		return s.svc.emit(ctx, tx, tenant, "sso.provider.deleted", out.GetId(), out)
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.DeleteSsoProviderResponse{}, nil
}

// ssoProviderNames lists the tenant's active providers, for the sign-in choices
// shown with an invitation.
func (s *Service) ssoProviderNames(ctx context.Context, tx *store.Tx) []string {
	names, err := tx.ListActiveSsoProviderNames(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "list sso providers", "err", err)
	}
	return nonNilStrings(names)
}
