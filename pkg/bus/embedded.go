package bus

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds the wait for the embedded server: JetStream recovers
// its streams from disk before the server accepts clients.
const readyTimeout = 30 * time.Second

// Embedded is a real nats-server with JetStream running inside this process,
// for `manushya dev` and tests.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts nats-server with JetStream, storing streams under
// storeDir, listening on 127.0.0.1:port (-1 picks a free port), and returns
// once it accepts connections. Restarting on the same storeDir recovers the
// streams and their messages.
func StartEmbedded(storeDir string, port int) (*Embedded, error) {
	if storeDir == "" {
		return nil, errors.New("start embedded nats: store dir is required")
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "manushya-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		// The host process owns signals and logging.
		NoSigs: true,
		NoLog:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats on port %d: not ready after %s", port, readyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats: jetstream did not start (store dir %s)", storeDir)
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Port is the port the server listens on, useful to restart it on the same one.
func (e *Embedded) Port() int {
	if a, ok := e.srv.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
