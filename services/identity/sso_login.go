package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/kv"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// ssoLogin is a started sign-in, stored server-side under the hash of its state
// value until the callback claims it (once). It carries the provider settings the
// sign-in began with, so a provider edited meanwhile does not change a sign-in
// half-way; only the client secret is read again, and a deleted or deactivated
// provider stops it.
type ssoLogin struct {
	Tenant       uuid.UUID `json:"tenant"`
	ProviderID   uuid.UUID `json:"provider_id"`
	ProviderName string    `json:"provider_name"`
	Issuer       string    `json:"issuer"`
	ClientID     string    `json:"client_id"`
	Scopes       []string  `json:"scopes"`
	Nonce        string    `json:"nonce"`
	Verifier     string    `json:"verifier"`
	AppRedirect  string    `json:"app_redirect,omitempty"`
	// InvitationID is the invitation being accepted. StartSsoLogin checked its
	// token; the token itself is not kept, so the state store holds no credential.
	InvitationID *uuid.UUID `json:"invitation_id,omitempty"`
	UserAgent    string     `json:"user_agent,omitempty"`
	// BrowserHash is the hash of the cookie set in the browser that started the
	// sign-in; the callback must carry that cookie (sso_browser.go).
	BrowserHash string `json:"browser_hash"`
	// The provider's identity rules, as they were.
	ClaimExternalID      string   `json:"claim_external_id"`
	ClaimEmail           string   `json:"claim_email"`
	ClaimName            string   `json:"claim_name"`
	ClaimRoles           string   `json:"claim_roles"`
	AllowedEmailDomains  []string `json:"allowed_email_domains"`
	JITCreate            bool     `json:"jit_create"`
	DefaultRole          string   `json:"default_role"`
	AllowUnverifiedEmail bool     `json:"allow_unverified_email"`
	AllowedRoles         []string `json:"allowed_roles"`
}

// ssoCodeGrant is what a one-time code stands for: a finished sign-in whose
// session opens when the application exchanges the code.
type ssoCodeGrant struct {
	Tenant          uuid.UUID `json:"tenant"`
	Identity        uuid.UUID `json:"identity"`
	IdentityCreated bool      `json:"identity_created"`
	UserAgent       string    `json:"user_agent,omitempty"`
}

// The one-time code reads "msc_" and 43 base64url characters.
const ssoCodePrefix = "msc_"

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", apierr.Internal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// kvKeyOf stores secrets by hash only, so the state store (Redis) never holds a
// value that could be replayed.
func kvKeyOf(kind, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "identity:sso:" + kind + ":" + hex.EncodeToString(h[:])
}

// claimOnce reads the value stored under key and makes sure only one caller ever
// gets it: the first to set the "used" marker wins, every later one (a replayed
// state or code) finds nothing.
func (t *tokens) claimOnce(ctx context.Context, key string, ttl time.Duration) ([]byte, bool, error) {
	raw, err := t.kv.Get(ctx, key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	claimed, err := t.kv.SetNX(ctx, key+":used", []byte("1"), ttl)
	if err != nil {
		return nil, false, err
	}
	if !claimed {
		return nil, false, nil
	}
	_ = t.kv.Delete(ctx, key)
	return raw, true, nil
}

func (s *ssoServer) StartSsoLogin(ctx context.Context, req *identityv1.StartSsoLoginRequest) (*identityv1.StartSsoLoginResponse, error) {
	return s.svc.startSSO(ctx, req)
}

func (s *Service) startSSO(ctx context.Context, req *identityv1.StartSsoLoginRequest) (*identityv1.StartSsoLoginResponse, error) {
	ref := req.GetTenant()
	if ref == "" {
		ref = s.sso.defaultTenant
	}
	if ref == "" {
		return nil, apierr.Field("tenant", "is required: this server has no default tenant")
	}
	notFound := apierr.NotFound("sso provider", req.GetProvider())
	tenant, found, err := s.loginTenant(ctx, ref)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("resolve tenant: %w", err))
	}
	if !found {
		return nil, notFound
	}
	var prov sqlc.IdentitySsoProvider
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		prov, err = tx.GetSsoProviderByName(ctx, req.GetProvider())
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound
		}
		return nil, err
	}
	if !prov.IsActive {
		return nil, apierr.FailedPrecondition("sso provider %q is not active", prov.Name)
	}
	app := req.GetRedirectUri()
	switch {
	case app == "" && len(prov.RedirectUrls) > 0:
		app = prov.RedirectUrls[0]
	case app != "" && !slices.Contains(prov.RedirectUrls, app):
		return nil, apierr.Field("redirect_uri", "is not one of the provider's redirect_urls")
	}
	login := ssoLogin{
		Tenant: tenant, ProviderID: prov.ID, ProviderName: prov.Name, Issuer: prov.IssuerUrl, ClientID: prov.ClientID,
		Scopes: prov.Scopes, AppRedirect: app, UserAgent: clientOf(ctx).userAgent,
		ClaimExternalID: prov.ClaimExternalID, ClaimEmail: prov.ClaimEmail, ClaimName: prov.ClaimName, ClaimRoles: prov.ClaimRoles,
		AllowedEmailDomains: prov.AllowedEmailDomains, JITCreate: prov.JitCreate, DefaultRole: prov.DefaultRole,
		AllowUnverifiedEmail: prov.AllowUnverifiedEmail, AllowedRoles: prov.AllowedRoles,
	}
	if inv := req.GetInvitationToken(); inv != "" {
		// Fail early on an invitation that cannot be accepted here; the callback
		// checks it again under lock.
		err := s.invitationByToken(ctx, inv, func(_ *store.Tx, invTenant uuid.UUID, row sqlc.IdentityInvitation) error {
			if invTenant != tenant {
				return apierr.NotFound("invitation", "(token)")
			}
			login.InvitationID = &row.ID
			return usable(row)
		})
		if err != nil {
			return nil, err
		}
	}
	state, err := randomToken(32)
	if err != nil {
		return nil, err
	}
	if login.Nonce, err = randomToken(32); err != nil {
		return nil, err
	}
	login.Verifier = oauth2.GenerateVerifier()
	binding, err := randomToken(32)
	if err != nil {
		return nil, err
	}
	login.BrowserHash = browserHash(binding)
	p, err := s.sso.providers.get(ctx, prov.IssuerUrl)
	if err != nil {
		return nil, apierr.Unavailable("sso provider %q cannot be reached: %v", prov.Name, err)
	}
	oc := oauth2.Config{ClientID: prov.ClientID, Endpoint: p.Endpoint(), RedirectURL: s.sso.callbackURL(prov.Name), Scopes: prov.Scopes}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(login.Nonce), oauth2.S256ChallengeOption(login.Verifier)}
	if hint := req.GetLoginHint(); hint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	authURL := oc.AuthCodeURL(state, opts...)
	raw, err := json.Marshal(login)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if err := s.tokens.kv.Set(ctx, kvKeyOf("state", state), raw, s.sso.stateTTL); err != nil {
		return nil, apierr.Internal(fmt.Errorf("store sso state: %w", err))
	}
	setBrowserCookie(ctx, s.sso.browserCookie(binding, s.sso.stateTTL))
	return &identityv1.StartSsoLoginResponse{
		AuthorizationUrl: authURL, State: state, ExpireTime: timestamppb.New(time.Now().Add(s.sso.stateTTL)),
	}, nil
}

// ssoFailure is a refused callback: the client's error plus a short reason for
// the auth.login.failed event.
type ssoFailure struct {
	reason string
	err    error
}

func (f *ssoFailure) Error() string { return f.err.Error() }
func (f *ssoFailure) Unwrap() error { return f.err }

// refuse is a callback refusal; the message says what was wrong, never a secret.
func refuse(reason, format string, args ...any) error {
	return &ssoFailure{reason: reason, err: apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED, "single sign-on refused: "+format, args...)}
}

func refuseCode(code codes.Code, reason, format string, args ...any) error {
	return &ssoFailure{reason: reason, err: apierr.New(code, errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED, "single sign-on refused: "+format, args...)}
}

func (s *ssoServer) SsoCallback(ctx context.Context, req *identityv1.SsoCallbackRequest) (*identityv1.SsoCallbackResponse, error) {
	return s.svc.ssoCallback(ctx, req)
}

func (s *Service) ssoCallback(ctx context.Context, req *identityv1.SsoCallbackRequest) (*identityv1.SsoCallbackResponse, error) {
	stateKey := kvKeyOf("state", req.GetState())
	unknown := apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED,
		"single sign-on refused: the state is unknown, expired or already used; start the sign-in again")
	// The browser check comes before the state is claimed, so a callback URL opened
	// in another browser does not use up the sign-in of the browser it belongs to.
	peek, err := s.tokens.kv.Get(ctx, stateKey)
	if errors.Is(err, kv.ErrNotFound) {
		// No tenant is known without the state, so there is no event to record.
		return nil, unknown
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("read sso state: %w", err))
	}
	var login ssoLogin
	if err := json.Unmarshal(peek, &login); err != nil {
		return nil, apierr.Internal(fmt.Errorf("decode sso state: %w", err))
	}
	var fail error
	var resp *identityv1.SsoCallbackResponse
	if !sameBrowser(ctx, login.BrowserHash) {
		fail = refuse("browser_mismatch", "this sign-in was started in another browser (its cookie is missing or different); start the sign-in again here")
	} else {
		raw, ok, err := s.tokens.claimOnce(ctx, stateKey, s.sso.stateTTL)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("claim sso state: %w", err))
		}
		if !ok {
			return nil, unknown
		}
		if err := json.Unmarshal(raw, &login); err != nil {
			return nil, apierr.Internal(fmt.Errorf("decode sso state: %w", err))
		}
		// The state is used up either way: the cookie has done its work.
		setBrowserCookie(ctx, s.sso.browserCookie("", 0))
		resp, fail = s.finishSSO(ctx, req, login)
	}
	if fail == nil {
		return resp, nil
	}
	reason := "error"
	var f *ssoFailure
	if errors.As(fail, &f) {
		reason = f.reason
	}
	c := clientOf(ctx)
	ev, err := loginEvent(login.Tenant, "auth.login.failed", uuid.Nil, "", c, methodSSO+":"+login.ProviderName+":"+reason)
	if err == nil {
		err = s.store.InTenant(ctx, login.Tenant, func(tx *store.Tx) error { return tx.Emit(ctx, ev) })
	}
	if err != nil {
		s.logger.WarnContext(ctx, "sso login failure not recorded", "err", err)
	}
	s.logger.InfoContext(ctx, "single sign-on refused", "tenant_id", login.Tenant, "provider", login.ProviderName, "reason", reason)
	if f != nil && reason == "provider_error" && login.AppRedirect != "" {
		// The application asked to be sent back; tell it what the provider said.
		return &identityv1.SsoCallbackResponse{RedirectUrl: appRedirect(login.AppRedirect, url.Values{
			"error": {req.GetError()}, "error_description": {req.GetErrorDescription()}, "state": {req.GetState()},
		})}, nil
	}
	return nil, fail
}

func appRedirect(base string, q url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	vals := u.Query()
	for k, v := range q {
		if len(v) > 0 && v[0] != "" {
			vals[k] = v
		}
	}
	u.RawQuery = vals.Encode()
	return u.String()
}

// ssoIdentity is what the ID token says about the person, after the mapping.
type ssoIdentity struct {
	subject, externalID, email, name string
	emailVerified                    bool
	// syncRoles is set when the provider maps a roles claim: roles are then the
	// provider-given roles, which replace those of the identity that the provider
	// manages (login.managesRole) at every sign-in.
	syncRoles bool
	roles     []string
}

// finishSSO does the callback's work once the state is claimed.
func (s *Service) finishSSO(ctx context.Context, req *identityv1.SsoCallbackRequest, login ssoLogin) (*identityv1.SsoCallbackResponse, error) {
	if req.GetProvider() != login.ProviderName {
		return nil, refuse("provider_mismatch", "the state belongs to another provider")
	}
	if req.GetError() != "" {
		return nil, refuse("provider_error", "the provider answered %q: %s", req.GetError(), req.GetErrorDescription())
	}
	if req.GetCode() == "" {
		return nil, &ssoFailure{reason: "missing_code", err: apierr.Field("code", "is required")}
	}
	// RFC 9207: an issuer in the response that is not ours means a mix-up attack.
	if iss := req.GetIss(); iss != "" && iss != login.Issuer {
		return nil, refuse("issuer_mismatch", "the response names issuer %q, not the provider's", iss)
	}
	var prov sqlc.IdentitySsoProvider
	err := s.store.InTenant(ctx, login.Tenant, func(tx *store.Tx) error {
		var err error
		prov, err = tx.GetSsoProvider(ctx, login.ProviderID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && !prov.IsActive) {
		return nil, refuse("provider_gone", "sso provider %q was deleted or deactivated", login.ProviderName)
	}
	if err != nil {
		return nil, err
	}
	secret, err := s.openClientSecret(ctx, prov)
	if err != nil {
		return nil, err
	}
	p, err := s.sso.providers.get(ctx, login.Issuer)
	if err != nil {
		return nil, refuseCode(codes.Unavailable, "provider_unreachable", "the provider cannot be reached")
	}
	oc := oauth2.Config{ClientID: login.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: s.sso.callbackURL(login.ProviderName), Scopes: login.Scopes}
	hctx := s.sso.providers.clientContext(ctx)
	tok, err := oc.Exchange(hctx, req.GetCode(), oauth2.VerifierOption(login.Verifier))
	if err != nil {
		if code := oauthErrorCode(err); code != "" {
			return nil, refuse("code_exchange", "the provider refused the code (%s); codes work once", code)
		}
		return nil, refuseCode(codes.Unavailable, "code_exchange", "the code could not be exchanged with the provider")
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, refuse("no_id_token", "the provider returned no ID token")
	}
	idt, err := p.VerifierContext(hctx, &oidc.Config{ClientID: login.ClientID}).Verify(hctx, rawID)
	if err != nil {
		var expired *oidc.TokenExpiredError
		switch {
		case errors.As(err, &expired):
			return nil, refuse("id_token_expired", "the ID token has expired")
		case strings.Contains(err.Error(), "different provider"):
			return nil, refuse("id_token_issuer", "the ID token was issued by another issuer")
		case strings.Contains(err.Error(), "expected audience"):
			return nil, refuse("id_token_audience", "the ID token is meant for another client")
		case strings.Contains(err.Error(), "signature"):
			return nil, refuse("id_token_signature", "the ID token's signature does not verify against the provider's keys")
		}
		return nil, refuse("id_token_invalid", "the ID token is not valid")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(login.Nonce)) != 1 {
		return nil, refuse("nonce_mismatch", "the ID token's nonce does not belong to this sign-in")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, refuse("id_token_invalid", "the ID token's claims cannot be read")
	}
	// With several audiences the token must say it was issued to us (azp).
	if len(idt.Audience) > 1 {
		if azp, _ := claims["azp"].(string); azp != login.ClientID {
			return nil, refuse("id_token_audience", "the ID token was issued to another client (azp)")
		}
	}
	s.fillFromUserinfo(hctx, p, tok, idt.Subject, login, claims)
	who, err := mapClaims(idt.Subject, claims, login)
	if err != nil {
		return nil, err
	}
	identityID, created, err := s.resolveSSOIdentity(ctx, login, who)
	if err != nil {
		return nil, err
	}
	if login.AppRedirect != "" {
		code, err := randomToken(32)
		if err != nil {
			return nil, err
		}
		code = ssoCodePrefix + code
		grant, err := json.Marshal(ssoCodeGrant{Tenant: login.Tenant, Identity: identityID, IdentityCreated: created, UserAgent: login.UserAgent})
		if err != nil {
			return nil, apierr.Internal(err)
		}
		if err := s.tokens.kv.Set(ctx, kvKeyOf("code", code), grant, ssoCodeTTL); err != nil {
			return nil, apierr.Internal(fmt.Errorf("store sso code: %w", err))
		}
		return &identityv1.SsoCallbackResponse{
			RedirectUrl: appRedirect(login.AppRedirect, url.Values{"code": {code}, "state": {req.GetState()}}),
			Code:        code, IdentityCreated: created,
		}, nil
	}
	toks, ident, err := s.completeLogin(ctx, login.Tenant, identityID, methodSSO, login.UserAgent, "")
	if err != nil {
		return nil, err
	}
	return &identityv1.SsoCallbackResponse{Identity: ident, Tokens: toks, IdentityCreated: created}, nil
}

// fillFromUserinfo adds the mapped claims the ID token left out from the userinfo
// endpoint (some providers put only "sub" in the ID token). It never replaces a
// claim of the signed token, and ignores an answer about another subject.
func (s *Service) fillFromUserinfo(ctx context.Context, p *oidc.Provider, tok *oauth2.Token, subject string, login ssoLogin, claims map[string]any) {
	missing := false
	for _, c := range []string{orDefault(login.ClaimEmail, "email"), orDefault(login.ClaimExternalID, "email"), orDefault(login.ClaimName, "name")} {
		if _, ok := claims[c]; !ok {
			missing = true
		}
	}
	if !missing || p.UserInfoEndpoint() == "" {
		return
	}
	info, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Subject != subject {
		return
	}
	var extra map[string]any
	if err := info.Claims(&extra); err != nil {
		return
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// claimString reads a string claim; numbers (some providers' subject ids) are
// accepted as their decimal form.
func claimString(claims map[string]any, name string) string {
	switch v := claims[name].(type) {
	case string:
		return strings.TrimSpace(v)
	case float64:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%f", v), "0"), ".")
	}
	return ""
}

// claimTrue reads email_verified, which a few providers send as a string.
func claimTrue(claims map[string]any, name string) bool {
	switch v := claims[name].(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// mapClaims applies the provider's claim mapping and its email rules.
func mapClaims(subject string, claims map[string]any, login ssoLogin) (ssoIdentity, error) {
	who := ssoIdentity{
		subject: subject,
		email:   strings.ToLower(claimString(claims, orDefault(login.ClaimEmail, "email"))),
		name:    claimString(claims, orDefault(login.ClaimName, "name")),
	}
	if subject == "" {
		return who, refuse("id_token_invalid", "the ID token has no subject")
	}
	who.emailVerified = who.email != "" && claimTrue(claims, "email_verified")
	if who.email != "" && !who.emailVerified && !login.AllowUnverifiedEmail {
		return who, refuse("email_unverified", "the provider has not verified the email address %q", who.email)
	}
	if len(login.AllowedEmailDomains) > 0 {
		_, domain, ok := strings.Cut(who.email, "@")
		if !ok || !slices.Contains(login.AllowedEmailDomains, domain) {
			return who, refuseCode(codes.PermissionDenied, "email_domain", "email addresses of this domain may not sign in through this provider")
		}
	}
	extClaim := orDefault(login.ClaimExternalID, "email")
	who.externalID = claimString(claims, extClaim)
	if extClaim == orDefault(login.ClaimEmail, "email") {
		who.externalID = who.email
	}
	if who.externalID == "" {
		return who, refuse("claim_missing", "the provider sent no %q claim to use as external_id", extClaim)
	}
	if login.ClaimRoles != "" {
		who.syncRoles = true
		who.roles = login.providerRoles(claims[login.ClaimRoles])
	}
	return who, nil
}

// managesRole reports whether the provider's roles claim decides role r: one of
// its allowed_roles, or, without that list, any role ranking no higher than its
// default role, admin never. Roles it does not manage are not its to give or take.
func (l ssoLogin) managesRole(r string) bool {
	if len(l.AllowedRoles) > 0 {
		return slices.Contains(l.AllowedRoles, r)
	}
	return r != auth.RoleAdmin && roleRank(r) <= roleRank(l.DefaultRole)
}

// providerRoles keeps the role names of a roles claim (a list, or one string of
// names separated by spaces or commas) that the provider manages: a provider (or
// whoever controls its groups) can never make an identity more powerful than the
// tenant admin configured.
func (l ssoLogin) providerRoles(v any) []string {
	var names []string
	switch t := v.(type) {
	case []any:
		for _, r := range t {
			if s, ok := r.(string); ok {
				names = append(names, s)
			}
		}
	case string:
		names = strings.Fields(strings.ReplaceAll(t, ",", " "))
	}
	out := []string{}
	for _, r := range names {
		r = strings.ToLower(strings.TrimSpace(r))
		if !roleName(r) || !l.managesRole(r) || slices.Contains(out, r) {
			continue
		}
		out = append(out, r)
		if len(out) == maxExtraRoles {
			break
		}
	}
	return out
}

// syncedRoles is an identity's extra roles after a sign-in: the ones the
// provider does not manage stay, the managed ones are the claim's (the primary
// role is never repeated among them).
func (l ssoLogin) syncedRoles(primary string, current, fromClaim []string) []string {
	out := []string{}
	for _, r := range current {
		if !l.managesRole(r) && r != primary && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, r := range fromClaim {
		if r != primary && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// roleName is the role pattern of the API (^[a-z][a-z0-9_-]{0,63}$).
func roleName(r string) bool {
	if r == "" || len(r) > 64 || r[0] < 'a' || r[0] > 'z' {
		return false
	}
	for _, c := range r {
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// resolveSSOIdentity finds the identity of a verified sign-in, linking or creating
// it, in one transaction: a linked account first; then an invitation being
// accepted; then an identity whose external_id is the email address, only when the
// provider verified that address; then just-in-time creation when the provider
// allows it.
func (s *Service) resolveSSOIdentity(ctx context.Context, login ssoLogin, who ssoIdentity) (uuid.UUID, bool, error) {
	if login.InvitationID != nil {
		return s.acceptInvitationSSO(ctx, login, who, *login.InvitationID)
	}
	var (
		id      uuid.UUID
		created bool
		synced  rolesSync
	)
	err := s.store.InTenant(ctx, login.Tenant, func(tx *store.Tx) error {
		synced = rolesSync{}
		link, err := tx.GetSsoLink(ctx, sqlc.GetSsoLinkParams{ProviderID: login.ProviderID, Subject: who.subject})
		switch err = store.MapErr(err); {
		case err == nil:
			ident, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: link.IdentityID})
			if err != nil || !ident.IsActive {
				return refuseCode(codes.PermissionDenied, "identity_inactive", "the identity of this account is deleted or deactivated")
			}
			id = ident.ID
			if synced, err = s.syncSSORoles(ctx, tx, login, who, id); err != nil {
				return err
			}
			return tx.TouchSsoLink(ctx, sqlc.TouchSsoLinkParams{ProviderID: login.ProviderID, Subject: who.subject, Email: who.email})
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if who.emailVerified {
			matches, err := tx.FindIdentityByEmail(ctx, who.email)
			if err != nil {
				return err
			}
			if len(matches) == 1 && matches[0].Kind == "user" {
				if !matches[0].IsActive {
					return refuseCode(codes.PermissionDenied, "identity_inactive", "the identity of this email address is deactivated")
				}
				id = matches[0].ID
				if synced, err = s.syncSSORoles(ctx, tx, login, who, id); err != nil {
					return err
				}
				return tx.CreateSsoLink(ctx, sqlc.CreateSsoLinkParams{
					TenantID: login.Tenant, ProviderID: login.ProviderID, Subject: who.subject, IdentityID: id, Email: who.email,
				})
			}
		}
		if !login.JITCreate {
			return refuseCode(codes.PermissionDenied, "no_identity", "no identity matches this account and the provider does not create identities")
		}
		ident, err := s.createSSOIdentity(ctx, tx, login, who, login.DefaultRole, login.syncedRoles(login.DefaultRole, nil, who.roles), nil)
		if err != nil {
			return err
		}
		id, created = ident.ID, true
		return nil
	})
	if err == nil {
		s.settleRoles(ctx, synced)
	}
	return id, created, err
}

// createSSOIdentity creates a user identity for a provider account and links it.
// baseClaims (an invitation's) are kept; name and email are added from the token.
func (s *Service) createSSOIdentity(ctx context.Context, tx *store.Tx, login ssoLogin, who ssoIdentity, role string, roles []string, baseClaims []byte) (sqlc.IdentityIdentity, error) {
	claims := map[string]any{}
	if len(baseClaims) > 0 {
		if err := json.Unmarshal(baseClaims, &claims); err != nil {
			return sqlc.IdentityIdentity{}, apierr.Internal(fmt.Errorf("decode invitation claims: %w", err))
		}
	}
	if who.name != "" {
		claims["name"] = who.name
	}
	if who.email != "" {
		claims["email"] = who.email
		claims["email_verified"] = who.emailVerified
	}
	rawClaims, err := json.Marshal(claims)
	if err != nil {
		return sqlc.IdentityIdentity{}, apierr.Internal(err)
	}
	names, err := sensitiveNamesOf(ctx, tx, login.Tenant)
	if err != nil {
		return sqlc.IdentityIdentity{}, err
	}
	rawClaims, sensitive, err := splitClaims(rawClaims, names)
	if err != nil {
		return sqlc.IdentityIdentity{}, err
	}
	if roles == nil {
		roles = []string{}
	}
	row, err := tx.CreateIdentity(ctx, sqlc.CreateIdentityParams{
		ID: newID(), TenantID: login.Tenant, ExternalID: who.externalID, Kind: "user", Role: role, Roles: roles, Claims: rawClaims,
	})
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			// Reached only when the address is unverified or the external_id is
			// not an email: such claims never take over an existing identity.
			return row, refuseCode(codes.AlreadyExists, "identity_exists",
				"an identity with external_id %q exists and this account cannot be linked to it (the provider did not verify a matching email address)", who.externalID)
		}
		return row, err
	}
	if err := s.writeSensitiveClaims(ctx, tx, login.Tenant, row.ID, sensitive, true); err != nil {
		return row, err
	}
	ident, err := identityToProto(row)
	if err != nil {
		return row, err
	}
	if err := s.emit(ctx, tx, login.Tenant, "identity.created", ident.GetId(), s.redactedForEvent(ctx, tx, ident)); err != nil {
		return row, err
	}
	err = tx.CreateSsoLink(ctx, sqlc.CreateSsoLinkParams{
		TenantID: login.Tenant, ProviderID: login.ProviderID, Subject: who.subject, IdentityID: row.ID, Email: who.email,
	})
	return row, store.MapErr(err)
}

// acceptInvitationSSO accepts an invitation with a provider account: the provider
// must have verified an email address equal to the invitation's. The identity
// gets the invitation's role and claims and is linked to the account; JIT
// creation need not be on, since the invitation is the tenant's consent.
func (s *Service) acceptInvitationSSO(ctx context.Context, login ssoLogin, who ssoIdentity, invitationID uuid.UUID) (uuid.UUID, bool, error) {
	var id uuid.UUID
	err := s.store.InTenant(ctx, login.Tenant, func(tx *store.Tx) error {
		row, err := tx.GetInvitationForUpdate(ctx, invitationID)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return refuseCode(codes.NotFound, "invitation", "the invitation was not found")
			}
			return err
		}
		if err := usable(row); err != nil {
			return &ssoFailure{reason: "invitation", err: err}
		}
		if !who.emailVerified || !strings.EqualFold(who.email, strings.TrimSpace(row.Email)) {
			return refuseCode(codes.PermissionDenied, "invitation_email",
				"the invitation is for another email address, or the provider has not verified this one")
		}
		if _, err := tx.GetSsoLink(ctx, sqlc.GetSsoLinkParams{ProviderID: login.ProviderID, Subject: who.subject}); err == nil {
			return refuseCode(codes.AlreadyExists, "identity_exists", "this account already signs in to an identity; the invitation cannot be accepted with it")
		}
		ident, err := s.createSSOIdentity(ctx, tx, login, who, row.Role, []string{}, row.Claims)
		if err != nil {
			return err
		}
		accepted, err := tx.AcceptInvitation(ctx, sqlc.AcceptInvitationParams{ID: row.ID, AcceptedIdentityID: &ident.ID})
		if err != nil {
			return err
		}
		inv, err := invitationToProto(accepted)
		if err != nil {
			return err
		}
		id = ident.ID
		return s.emit(ctx, tx, login.Tenant, "invitation.accepted", accepted.ID.String(), inv)
	})
	if err != nil {
		return uuid.Nil, false, err
	}
	return id, true, nil
}

func (s *ssoServer) ExchangeSsoCode(ctx context.Context, req *identityv1.ExchangeSsoCodeRequest) (*identityv1.ExchangeSsoCodeResponse, error) {
	svc := s.svc
	unknown := apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "the code is unknown, expired or already used")
	if !strings.HasPrefix(req.GetCode(), ssoCodePrefix) {
		return nil, unknown
	}
	raw, ok, err := svc.tokens.claimOnce(ctx, kvKeyOf("code", req.GetCode()), ssoCodeTTL)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("claim sso code: %w", err))
	}
	if !ok {
		return nil, unknown
	}
	var g ssoCodeGrant
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, apierr.Internal(fmt.Errorf("decode sso code: %w", err))
	}
	toks, ident, err := svc.completeLogin(ctx, g.Tenant, g.Identity, methodSSO, g.UserAgent, "")
	if err != nil {
		return nil, err
	}
	return &identityv1.ExchangeSsoCodeResponse{Identity: ident, Tokens: toks, IdentityCreated: g.IdentityCreated}, nil
}
