// SPDX-License-Identifier: Apache-2.0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	pgpcrypto "github.com/ProtonMail/gopenpgp/v3/crypto"
	"github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"github.com/siderolabs/go-api-signature/pkg/message"
	"github.com/siderolabs/go-api-signature/pkg/pgp"
	"github.com/siderolabs/go-api-signature/pkg/serviceaccount"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // Omni's Go client compresses every call
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// trustedKeys maps lowercase fingerprints to the public keys whose signatures are accepted, as Omni's
// PublicKeys resources do.
type trustedKeys map[string]*pgp.Key

// runServe serves the reference in-memory state (what cosi-project/runtime's own example server runs)
// behind a go-api-signature verifier. Stdout: {"event":"listening","port":N} first, then one line per
// call ({"event":"call"|"refused",...}) and per watch open ({"event":"watch",...}). SIGUSR1 breaks every
// open Watch stream with UNAVAILABLE (to exercise client resume); SIGTERM/SIGINT stop the server.
func runServe(args []string) error {
	flags := flag.NewFlagSet("serve", flag.ContinueOnError)

	var publicKeyFiles, serviceAccountKeyFiles stringList

	flags.Var(&publicKeyFiles, "trust-public-key", "file with an ASCII-armored public key to accept (repeatable)")
	flags.Var(&serviceAccountKeyFiles, "trust-key", "file with a base64 service-account key whose public part to accept (repeatable)")

	if err := flags.Parse(args); err != nil {
		return err
	}

	keys, err := loadTrustedKeys(publicKeyFiles, serviceAccountKeyFiles)
	if err != nil {
		return err
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1: %w", err)
	}

	watches := &openWatches{cancels: map[int]context.CancelFunc{}}
	verifier := &signatureVerifier{keys: keys}

	grpcServer := grpc.NewServer(
		grpc.ChainUnaryInterceptor(verifier.unary),
		grpc.ChainStreamInterceptor(verifier.stream, watches.intercept),
	)

	coreState := state.WrapCore(namespaced.NewState(inmem.Build))
	v1alpha1.RegisterStateServer(grpcServer, server.NewState(coreState))

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)

	go func() {
		for sig := range signals {
			if sig == syscall.SIGUSR1 {
				emit(map[string]any{"event": "dropped", "count": watches.dropAll()})

				continue
			}

			grpcServer.Stop()

			return
		}
	}()

	emit(map[string]any{"event": "listening", "port": listener.Addr().(*net.TCPAddr).Port, "trusted_keys": len(keys)})

	if err := grpcServer.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}

	return nil
}

func loadTrustedKeys(publicKeyFiles, serviceAccountKeyFiles []string) (trustedKeys, error) {
	keys := trustedKeys{}

	for _, path := range publicKeyFiles {
		armored, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}

		cryptoKey, err := pgpcrypto.NewKeyFromArmored(string(armored))
		if err != nil {
			return nil, fmt.Errorf("%s: not an armored OpenPGP key: %w", path, err)
		}

		if cryptoKey.IsPrivate() {
			return nil, fmt.Errorf("%s: expected a public key, got a private one", path)
		}

		key, err := pgp.NewKey(cryptoKey)
		if err != nil {
			return nil, err
		}

		keys[key.Fingerprint()] = key
	}

	for _, path := range serviceAccountKeyFiles {
		encoded, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}

		account, err := serviceaccount.Decode(strings.TrimSpace(string(encoded)))
		if err != nil {
			return nil, fmt.Errorf("%s: service-account key rejected by go-api-signature: %w", path, err)
		}

		// Trust only the public part, as Omni stores it.
		armoredPublic, err := account.Key.ArmorPublic()
		if err != nil {
			return nil, err
		}

		cryptoKey, err := pgpcrypto.NewKeyFromArmored(armoredPublic)
		if err != nil {
			return nil, err
		}

		key, err := pgp.NewKey(cryptoKey)
		if err != nil {
			return nil, err
		}

		keys[key.Fingerprint()] = key
	}

	if len(keys) == 0 {
		return nil, errors.New("no trusted key: pass --trust-public-key or --trust-key")
	}

	return keys, nil
}

// signatureVerifier is the server half of go-api-signature as Omni uses it: every unary call and every
// stream open must carry a valid siderov1 signature by a trusted key.
type signatureVerifier struct {
	keys trustedKeys
}

func (v *signatureVerifier) verify(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	msg := message.NewGRPC(md, method)

	signature, err := msg.Signature()
	if err != nil {
		return v.refuse(method, fmt.Sprintf("signature header: %v", err))
	}

	key, ok := v.keys[signature.KeyFingerprint]
	if !ok {
		return v.refuse(method, fmt.Sprintf("unknown key fingerprint %q", signature.KeyFingerprint))
	}

	if err = msg.VerifySignature(key); err != nil {
		return v.refuse(method, err.Error())
	}

	emit(map[string]any{
		"event":       "call",
		"method":      method,
		"identity":    signature.Identity,
		"fingerprint": signature.KeyFingerprint,
		"providerid":  md.Get("providerid"),
	})

	return nil
}

func (v *signatureVerifier) refuse(method, reason string) error {
	emit(map[string]any{"event": "refused", "method": method, "reason": reason})

	// Omni's wording: every failure is the same to the caller.
	return status.Error(codes.Unauthenticated, "invalid signature")
}

func (v *signatureVerifier) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := v.verify(ctx, info.FullMethod); err != nil {
		return nil, err
	}

	return handler(ctx, req)
}

func (v *signatureVerifier) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := v.verify(ss.Context(), info.FullMethod); err != nil {
		return err
	}

	return handler(srv, ss)
}

// openWatches tracks Watch streams so that SIGUSR1 can break them all, as a lost connection would.
type openWatches struct {
	mu      sync.Mutex
	next    int
	cancels map[int]context.CancelFunc
}

type watchStream struct {
	grpc.ServerStream
	ctx context.Context //nolint:containedctx
}

func (s *watchStream) Context() context.Context { return s.ctx }

// RecvMsg reports what each Watch asked for, so tests can tell a resume from a re-bootstrap.
func (s *watchStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)

	if req, ok := m.(*v1alpha1.WatchRequest); ok && err == nil {
		emit(map[string]any{
			"event":               "watch",
			"namespace":           req.GetNamespace(),
			"type":                req.GetType(),
			"bootstrap_contents":  req.GetOptions().GetBootstrapContents(),
			"bootstrap_bookmark":  req.GetOptions().GetBootstrapBookmark(),
			"start_from_bookmark": req.GetOptions().GetStartFromBookmark() != nil,
			"label_queries":       len(req.GetOptions().GetLabelQuery()),
			"api_version":         req.GetApiVersion(),
		})
	}

	return err
}

func (w *openWatches) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != "/cosi.resource.State/Watch" {
		return handler(srv, ss)
	}

	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()

	w.mu.Lock()
	id := w.next
	w.next++
	w.cancels[id] = cancel
	w.mu.Unlock()

	err := handler(srv, &watchStream{ServerStream: ss, ctx: ctx})

	w.mu.Lock()
	delete(w.cancels, id)
	w.mu.Unlock()

	// The reference handler ends cleanly when its context is cancelled; a dropped connection is an error
	// to the client.
	if ctx.Err() != nil && ss.Context().Err() == nil {
		return status.Error(codes.Unavailable, "watch broken by the interop server (SIGUSR1)")
	}

	return err
}

func (w *openWatches) dropAll() int {
	w.mu.Lock()
	defer w.mu.Unlock()

	for _, cancel := range w.cancels {
		cancel()
	}

	return len(w.cancels)
}
