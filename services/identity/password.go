package identity

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// argon2id parameters: OWASP's first recommendation (19 MiB, two passes, one lane).
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32

	// defaultPasswordMinLength applies when the tenant sets none.
	defaultPasswordMinLength = 12
	// maxPasswordBytes bounds the work one request can ask for.
	maxPasswordBytes = 1024
)

// hasher runs password hashing on a fixed pool of workers: at most `workers`
// hashes at once and at most `queue` sign-ins in flight, so a flood of logins takes
// a bounded share of the CPU and memory and the other RPCs keep theirs. Each worker
// owns its OS thread and lowers that thread's scheduling priority (Linux), so when
// the machine is busy the kernel runs request handlers and PostgreSQL first.
// Callers over the queue are told to retry.
//
// The lowered priority only helps if the kernel gets to choose: a goroutine running
// Go code holds one of GOMAXPROCS scheduler slots (Ps), and Go's scheduler, which
// knows nothing of thread priorities, lets it run 10 ms slices before anything else
// waiting for that P. On a 2-core machine one busy hasher left request handling a
// single P and stretched GetIdentity's p99 to ~24 ms during a login flood. So the
// process-wide pool (sharedHasher) adds one P per worker: handlers keep every P
// they had, and the kernel's scheduler, which honours the nice value and preempts
// at a finer grain, shares the cores.
type hasher struct {
	jobs    chan hashJob
	waiting atomic.Int64
	queue   int64
	workers int
}

type hashJob struct {
	fn   func()
	done chan struct{}
}

// baseProcs is GOMAXPROCS as the process started, before hashing workers added
// theirs.
var baseProcs = runtime.GOMAXPROCS(0)

var (
	sharedMu  sync.Mutex
	sharedOne *hasher
	// hashBallast is held, never touched, so the garbage collector counts the
	// hashing pool's working memory as expected heap (see sharedHasher).
	hashBallast []byte //nolint:unused // only held, never read: its size is the point
)

// ballastHashes is how many hashes' memory the ballast stands for, per worker.
const ballastHashes = 6

// sharedHasher returns the process's password hasher, made on first use with the
// given number of workers (0: one less than the cores, at least one). One pool
// serves every service instance of the process: the cores it shares are the
// process's. Making it raises GOMAXPROCS by its workers (see hasher).
func sharedHasher(workers int) *hasher {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedOne == nil {
		sharedOne = newHasher(workers, 0)
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + sharedOne.workers)
		// Every hash allocates 19 MiB that is garbage a moment later (x/crypto's
		// argon2 cannot reuse memory). With a small live heap that met the GC's
		// target every second login, and the cycles' assists and pauses doubled
		// GetIdentity's p99 during a login flood. A pointer-free ballast the size of
		// a few hashes raises the target so a cycle comes every few logins. It is
		// never written, so its pages are never made resident; the cost is that
		// up to that much hashing garbage may be resident between cycles.
		hashBallast = make([]byte, ballastHashes*sharedOne.workers*argonMemory*1024)
	}
	return sharedOne
}

func newHasher(workers, queue int) *hasher {
	if workers <= 0 {
		// Leave a core for everything else.
		workers = max(1, baseProcs-1)
	}
	if queue <= 0 {
		queue = 64 * workers
	}
	h := &hasher{jobs: make(chan hashJob), queue: int64(queue), workers: workers}
	for range workers {
		go h.work()
	}
	return h
}

// work runs jobs for the life of the process. The goroutine never unlocks its
// thread, so the lowered priority stays with it and no other goroutine inherits it.
func (h *hasher) work() {
	runtime.LockOSThread()
	lowerThreadPriority()
	for job := range h.jobs {
		job.fn()
		close(job.done)
	}
}

var errHasherBusy = apierr.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED,
	"too many sign-ins at once; retry in a moment")

// run executes fn on a worker and waits for it. Once a worker has taken fn, run
// waits for it to finish even if ctx ends, since fn writes the caller's variables.
func (h *hasher) run(ctx context.Context, fn func()) error {
	if h.waiting.Add(1) > h.queue {
		h.waiting.Add(-1)
		return errHasherBusy
	}
	defer h.waiting.Add(-1)
	job := hashJob{fn: fn, done: make(chan struct{})}
	select {
	case h.jobs <- job:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-job.done
	return nil
}

// hashPassword returns the PHC string of password under argon2id.
func (h *hasher) hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	var key []byte
	if err := h.run(ctx, func() {
		key = argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	}); err != nil {
		return "", err
	}
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash is verified against when there is no real hash (unknown identifier, no
// password set), so every failed sign-in costs the same work. It is made once, on
// the calling goroutine: a pool of its own would keep a locked thread for nothing.
var dummyHash = sync.OnceValue(func() string {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	key := argon2.IDKey([]byte("manushya dummy password for timing"), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
})

// verifyPassword checks password against a stored hash (argon2id or bcrypt).
// rehash is true when the hash should be replaced by a current argon2id one.
func (h *hasher) verifyPassword(ctx context.Context, encoded, password string) (ok, rehash bool, err error) {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		p, err := parseArgon2(encoded)
		if err != nil {
			return false, false, err
		}
		var key []byte
		if err := h.run(ctx, func() {
			key = argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		}); err != nil {
			return false, false, err
		}
		ok = subtle.ConstantTimeCompare(key, p.key) == 1
		stale := p.memory < argonMemory || p.time < argonTime || len(p.key) < argonKeyLen
		return ok, ok && stale, nil
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		// Imported from systems that used bcrypt: accepted, and replaced on success.
		var cmpErr error
		if err := h.run(ctx, func() { cmpErr = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password)) }); err != nil {
			return false, false, err
		}
		if cmpErr != nil && !errors.Is(cmpErr, bcrypt.ErrMismatchedHashAndPassword) {
			return false, false, fmt.Errorf("bcrypt hash: %w", cmpErr)
		}
		return cmpErr == nil, cmpErr == nil, nil
	}
	return false, false, errors.New("unsupported password hash format")
}

type argonParams struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

func parseArgon2(encoded string) (argonParams, error) {
	var p argonParams
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 {
		return p, errors.New("malformed argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, errors.New("unsupported argon2id version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return p, errors.New("malformed argon2id parameters")
	}
	// Bounds keep a tampered row from turning one login into a denial of service.
	if p.memory == 0 || p.memory > 1<<20 || p.time == 0 || p.time > 16 || p.threads == 0 {
		return p, errors.New("argon2id parameters out of range")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return p, errors.New("malformed argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return p, errors.New("malformed argon2id key")
	}
	return p, nil
}

//go:embed common_passwords.txt
var commonPasswordsFile string

// commonPasswords is the bundled list, lower-cased.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	m := map[string]struct{}{}
	sc := bufio.NewScanner(strings.NewReader(commonPasswordsFile))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" && !strings.HasPrefix(w, "#") {
			m[strings.ToLower(w)] = struct{}{}
		}
	}
	return m
})

// checkPasswordPolicy refuses passwords below the tenant's minimum length (counted
// in characters) and those on the common-password list, as they are or with a
// trailing run of digits and symbols ("Password2024!").
func checkPasswordPolicy(field, password string, minLength int) error {
	if minLength <= 0 {
		minLength = defaultPasswordMinLength
	}
	if len(password) > maxPasswordBytes {
		return apierr.Field(field, "must be at most %d bytes", maxPasswordBytes)
	}
	if n := utf8.RuneCountInString(password); n < minLength {
		return apierr.Field(field, "must be at least %d characters", minLength)
	}
	lower := strings.ToLower(password)
	list := commonPasswords()
	if _, ok := list[lower]; ok {
		return apierr.Field(field, "is too common; choose a less guessable password")
	}
	base := strings.TrimRight(lower, "0123456789!@#$%^&*?._-+=~ ")
	if _, ok := list[base]; ok && base != "" {
		return apierr.Field(field, "is a common password with a suffix; choose a less guessable password")
	}
	if isRepetitive(lower) || isKeyboardWalk(lower) {
		return apierr.Field(field, "is too repetitive; choose a less guessable password")
	}
	return nil
}

// isRepetitive catches "aaaaaaaaaaaa" and "abcabcabcabc": a short unit repeated.
func isRepetitive(s string) bool {
	for unit := 1; unit <= 4 && unit < len(s); unit++ {
		if len(s)%unit != 0 {
			continue
		}
		if strings.Repeat(s[:unit], len(s)/unit) == s {
			return true
		}
	}
	return false
}

// keyboardRows are the runs people walk along: digits and the letter rows.
var keyboardRows = []string{"1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz"}

// isKeyboardWalk catches "1234567890123" and "poiuytrewqpoiu": a stretch of a row
// (forwards or backwards, wrapping around).
func isKeyboardWalk(s string) bool {
	for _, row := range keyboardRows {
		loop := strings.Repeat(row, 1+len(s)/len(row)+1)
		back := []byte(loop)
		for i, j := 0, len(back)-1; i < j; i, j = i+1, j-1 {
			back[i], back[j] = back[j], back[i]
		}
		if strings.Contains(loop, s) || strings.Contains(string(back), s) {
			return true
		}
	}
	return false
}
