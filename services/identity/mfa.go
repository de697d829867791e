package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	qrcode "github.com/skip2/go-qrcode"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// TOTP as every authenticator app understands it: SHA-1, 6 digits, 30 seconds, a
// 160-bit secret (RFC 6238, RFC 4226's recommended secret length). A code is
// accepted one step either side of now for clock drift, and never for a step at or
// before the last one accepted, so an observed code cannot be replayed.
const (
	totpPeriod       = 30
	totpDigits       = otp.DigitsSix
	totpSkew         = 1
	totpSecretSize   = 20
	backupCodeCount  = 10
	backupCodeLen    = 10
	backupAlphabet   = "abcdefghjkmnpqrstuvwxyz23456789" // no 0/o, 1/l/i
	mfaSetupLifetime = 15 * time.Minute
	qrCodeSize       = 256
)

// passwordChecker hashes and verifies passwords; password.go's hasher is one.
type passwordChecker interface {
	hashPassword(ctx context.Context, password string) (string, error)
	verifyPassword(ctx context.Context, encoded, password string) (ok, rehash bool, err error)
}

// mfaConfig is what MFA needs besides the store.
type mfaConfig struct {
	// sealer encrypts TOTP secrets at rest under the identity's data key, bound to
	// the identity id.
	sealer Sealer
	// issuer names the service in authenticator apps.
	issuer string
	// passwords verifies the password DisableMfa may be given instead of a code.
	passwords passwordChecker
}

var errMFACode = apierr.New(codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, "the code is not valid")

// callerIdentity returns the tenant and identity of the caller.
func callerIdentity(ctx context.Context) (tenant, identity uuid.UUID, p *auth.Principal, err error) {
	tenant, p, err = tenantOf(ctx)
	if err != nil {
		return uuid.Nil, uuid.Nil, nil, err
	}
	identity, err = uuid.Parse(p.IdentityID)
	if err != nil {
		return uuid.Nil, uuid.Nil, nil, apierr.Internal(fmt.Errorf("principal has identity %q: %w", p.IdentityID, err))
	}
	return tenant, identity, p, nil
}

// SetupMfa starts TOTP enrolment for the calling identity (AuthService.SetupMfa).
func (s *Service) SetupMfa(ctx context.Context, _ *identityv1.SetupMfaRequest) (*identityv1.SetupMfaResponse, error) {
	tenant, identity, _, err := callerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if s.mfa.sealer == nil {
		return nil, apierr.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "MFA is not configured on this server")
	}
	var resp *identityv1.SetupMfaResponse
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		ident, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: identity})
		if err != nil {
			return err
		}
		key, err := totp.Generate(totp.GenerateOpts{
			Issuer: s.mfa.issuer, AccountName: ident.ExternalID, Period: totpPeriod,
			SecretSize: totpSecretSize, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return apierr.Internal(fmt.Errorf("generate totp secret: %w", err))
		}
		sealed, err := s.mfa.sealer.Seal(ctx, totpRef(tenant, identity), []byte(key.Secret()))
		if err != nil {
			return apierr.Internal(fmt.Errorf("seal totp secret: %w", err))
		}
		expire := time.Now().Add(mfaSetupLifetime)
		n, err := tx.StartTOTPSetup(ctx, sqlc.StartTOTPSetupParams{TenantID: tenant, IdentityID: identity, SecretSealed: sealed, SetupExpireTime: expire})
		if err != nil {
			return err
		}
		if n == 0 {
			return apierr.FailedPrecondition("MFA is already active; disable it first")
		}
		codes, err := s.replaceBackupCodes(ctx, tx, tenant, identity)
		if err != nil {
			return err
		}
		png, err := qrcode.Encode(key.URL(), qrcode.Medium, qrCodeSize)
		if err != nil {
			return apierr.Internal(fmt.Errorf("encode qr code: %w", err))
		}
		resp = &identityv1.SetupMfaResponse{
			Secret: key.Secret(), OtpauthUri: key.URL(), QrCodePng: png, BackupCodes: codes,
			ExpireTime: timestamppb.New(expire),
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.NotFound("identity", identity.String())
		}
		return nil, err
	}
	return resp, nil
}

func (s *Service) replaceBackupCodes(ctx context.Context, tx *store.Tx, tenant, identity uuid.UUID) ([]string, error) {
	if err := tx.DeleteBackupCodes(ctx, identity); err != nil {
		return nil, err
	}
	out := make([]string, 0, backupCodeCount)
	for range backupCodeCount {
		code, err := randomString(backupAlphabet, backupCodeLen)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		code = code[:5] + "-" + code[5:]
		if err := tx.InsertBackupCode(ctx, sqlc.InsertBackupCodeParams{
			TenantID: tenant, IdentityID: identity, CodeHash: s.backupCodeHash(identity, code),
		}); err != nil {
			return nil, err
		}
		out = append(out, code)
	}
	return out, nil
}

// backupCodeHash is a keyed hash of a normalised code, bound to its identity; the
// database lookup by hash leaks nothing about the code through timing.
func (s *Service) backupCodeHash(identity uuid.UUID, code string) []byte {
	code = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(code), "-", ""))
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte("mfa-backup-code\x00"))
	m.Write(identity[:])
	m.Write([]byte(code))
	return m.Sum(nil)
}

func randomString(alphabet string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	// 256 is not a multiple of the alphabet size; reject the biased tail.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	for len(out) < n {
		for _, c := range b {
			if int(c) < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("random: %w", err)
		}
	}
	return string(out), nil
}

// matchTOTP returns the time step a code is valid for, after lastStep, or 0.
// Every candidate step is compared, in constant time, whatever matched before.
func matchTOTP(secret, code string, lastStep int64, now time.Time) (int64, error) {
	if len(code) != 6 {
		return 0, nil
	}
	cur := now.Unix() / totpPeriod
	var found int64
	for step := cur - totpSkew; step <= cur+totpSkew; step++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, fmt.Errorf("totp code: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && step > lastStep && found == 0 {
			found = step
		}
	}
	return found, nil
}

// VerifyMfa activates the pending TOTP enrolment of the caller (AuthService.VerifyMfa).
func (s *Service) VerifyMfa(ctx context.Context, req *identityv1.VerifyMfaRequest) (*identityv1.VerifyMfaResponse, error) {
	tenant, identity, _, err := callerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	var resp *identityv1.VerifyMfaResponse
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.GetTOTPForUpdate(ctx, identity)
		if err != nil {
			if errors.Is(store.MapErr(err), store.ErrNotFound) {
				return apierr.FailedPrecondition("no MFA setup is pending; call SetupMfa first")
			}
			return err
		}
		now := time.Now()
		switch {
		case row.EnableTime != nil:
			return apierr.FailedPrecondition("MFA is already active")
		case !row.SetupExpireTime.After(now):
			return apierr.FailedPrecondition("the MFA setup has lapsed; call SetupMfa again")
		}
		step, err := s.totpStep(ctx, row, identity, req.GetToken(), now)
		if err != nil {
			return err
		}
		if step == 0 {
			return errMFACode
		}
		enabled, err := tx.EnableTOTP(ctx, sqlc.EnableTOTPParams{IdentityID: identity, LastStep: step})
		if err != nil {
			return err
		}
		resp = &identityv1.VerifyMfaResponse{MfaEnabled: true, EnableTime: timestamppb.New(*enabled)}
		return s.emit(ctx, tx, tenant, "mfa.enabled", identity.String(), resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Service) totpStep(ctx context.Context, row sqlc.IdentityMfaTotp, identity uuid.UUID, code string, now time.Time) (int64, error) {
	if s.mfa.sealer == nil {
		return 0, apierr.FailedPrecondition("MFA is not configured on this server")
	}
	secret, err := s.mfa.sealer.Open(ctx, totpRef(row.TenantID, identity), row.SecretSealed)
	if err != nil {
		return 0, apierr.Internal(fmt.Errorf("open totp secret of %s: %w", identity, err))
	}
	step, err := matchTOTP(string(secret), strings.TrimSpace(code), row.LastStep, now)
	if err != nil {
		return 0, apierr.Internal(err)
	}
	return step, nil
}

// useSecondFactor consumes a TOTP code (recording its step) or an unused backup code
// of an identity with active MFA, inside tx. It reports whether the code was good.
func (s *Service) useSecondFactor(ctx context.Context, tx *store.Tx, identity uuid.UUID, code string) (bool, error) {
	row, err := tx.GetTOTPForUpdate(ctx, identity)
	if err != nil {
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	if row.EnableTime == nil {
		return false, nil
	}
	code = strings.TrimSpace(code)
	step, err := s.totpStep(ctx, row, identity, code, time.Now())
	if err != nil {
		return false, err
	}
	if step > 0 {
		n, err := tx.AdvanceTOTPStep(ctx, sqlc.AdvanceTOTPStepParams{IdentityID: identity, LastStep: step})
		return n == 1, err
	}
	n, err := tx.UseBackupCode(ctx, sqlc.UseBackupCodeParams{IdentityID: identity, CodeHash: s.backupCodeHash(identity, code)})
	return n == 1, err
}

// DisableMfa turns TOTP off for the caller, given a current code, an unused backup
// code or the password (AuthService.DisableMfa).
func (s *Service) DisableMfa(ctx context.Context, req *identityv1.DisableMfaRequest) (*identityv1.DisableMfaResponse, error) {
	tenant, identity, _, err := callerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetToken() == "" && req.GetPassword() == "" {
		return nil, apierr.Field("token", "token or password is required")
	}
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		ok := false
		if req.GetToken() != "" {
			if ok, err = s.useSecondFactor(ctx, tx, identity, req.GetToken()); err != nil {
				return err
			}
		}
		if !ok && req.GetPassword() != "" {
			if ok, err = s.checkIdentityPassword(ctx, tx, identity, req.GetPassword()); err != nil {
				return err
			}
		}
		if !ok {
			return errMFACode
		}
		n, err := tx.DeleteTOTP(ctx, identity)
		if err != nil {
			return err
		}
		if err := tx.DeleteBackupCodes(ctx, identity); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		return s.emit(ctx, tx, tenant, "mfa.disabled", identity.String(), &identityv1.DisableMfaResponse{})
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.DisableMfaResponse{MfaEnabled: false}, nil
}

// checkIdentityPassword verifies an identity's password with the password hasher.
func (s *Service) checkIdentityPassword(ctx context.Context, tx *store.Tx, identity uuid.UUID, password string) (bool, error) {
	if s.mfa.passwords == nil {
		return false, nil
	}
	ident, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: identity})
	if err != nil {
		return false, err
	}
	if ident.PasswordHash == nil || *ident.PasswordHash == "" {
		// No password set (an API-created identity): only a code can prove it. The
		// caller is the identity itself, so the shortcut tells it nothing new.
		return false, nil
	}
	ok, _, err := s.mfa.passwords.verifyPassword(ctx, *ident.PasswordHash, password)
	if err != nil {
		return false, err
	}
	return ok, nil
}

// MfaEnabled reports whether an identity has active MFA, for the login flow: when
// true, Login answers with a challenge instead of tokens.
func (s *Service) MfaEnabled(ctx context.Context, tenant, identity uuid.UUID) (bool, error) {
	var on bool
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		on, err = tx.TOTPEnabled(ctx, identity)
		return err
	})
	return on, err
}

// ErrSecondFactor is returned by VerifySecondFactor for a wrong, replayed or used
// code; the login flow counts it as a failed attempt.
var ErrSecondFactor = apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED, "the code is not valid")

// VerifySecondFactor consumes a TOTP code or a backup code of an identity with
// active MFA (CompleteMfaLogin). A TOTP code is accepted once; a backup code once.
func (s *Service) VerifySecondFactor(ctx context.Context, tenant, identity uuid.UUID, code string) error {
	return s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		ok, err := s.useSecondFactor(ctx, tx, identity, code)
		if err != nil {
			return err
		}
		if !ok {
			return ErrSecondFactor
		}
		return nil
	})
}

// mfaSecondFactor is the SecondFactor that Login and CompleteMfaLogin use.
type mfaSecondFactor struct{ s *Service }

// MFASecondFactor returns the second-factor hook to install with SetSecondFactor.
func (s *Service) MFASecondFactor() SecondFactor { return mfaSecondFactor{s: s} }

func (m mfaSecondFactor) Enabled(ctx context.Context, tenant, identity uuid.UUID) (bool, error) {
	return m.s.MfaEnabled(ctx, tenant, identity)
}

func (m mfaSecondFactor) Verify(ctx context.Context, tenant, identity uuid.UUID, code string) error {
	return m.s.VerifySecondFactor(ctx, tenant, identity, code)
}

func (m mfaSecondFactor) BackupCodesRemaining(ctx context.Context, tenant, identity uuid.UUID) (int, error) {
	var n int64
	err := m.s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		n, err = tx.CountUnusedBackupCodes(ctx, identity)
		return err
	})
	return int(n), err
}

var (
	_ SecondFactor      = mfaSecondFactor{}
	_ BackupCodeCounter = mfaSecondFactor{}
)

// SetupMfa implements AuthService.SetupMfa.
func (a *authServer) SetupMfa(ctx context.Context, req *identityv1.SetupMfaRequest) (*identityv1.SetupMfaResponse, error) {
	return a.svc.SetupMfa(ctx, req)
}

// VerifyMfa implements AuthService.VerifyMfa.
func (a *authServer) VerifyMfa(ctx context.Context, req *identityv1.VerifyMfaRequest) (*identityv1.VerifyMfaResponse, error) {
	return a.svc.VerifyMfa(ctx, req)
}

// DisableMfa implements AuthService.DisableMfa.
func (a *authServer) DisableMfa(ctx context.Context, req *identityv1.DisableMfaRequest) (*identityv1.DisableMfaResponse, error) {
	return a.svc.DisableMfa(ctx, req)
}
