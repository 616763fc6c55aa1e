// SPDX-License-Identifier: Apache-2.0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/cosi-project/runtime/pkg/state"
	cosiclient "github.com/cosi-project/runtime/pkg/state/protobuf/client"
	"github.com/siderolabs/go-api-signature/pkg/client/interceptor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The script's outcome: one record per step, in order. Only server-independent facts are recorded
// (versions, phases, finalizers, IDs, error classes, event sequences), never timestamps or bookmark
// bytes, so that the reference server's and the stand-in's outcomes can be compared for equality.
type step struct {
	Name         string   `json:"step"`
	Error        string   `json:"error,omitempty"`
	Version      string   `json:"version,omitempty"`
	Phase        string   `json:"phase,omitempty"`
	Owner        string   `json:"owner,omitempty"`
	Finalizers   []string `json:"finalizers,omitempty"`
	Labels       string   `json:"labels,omitempty"`
	Spec         string   `json:"spec,omitempty"`
	IDs          []string `json:"ids,omitempty"`
	DestroyReady *bool    `json:"destroy_ready,omitempty"`
	Events       []string `json:"events,omitempty"`
}

type scriptRunner struct {
	st      state.State
	ns      string
	typ     string
	owner   string
	steps   []step
	timeout time.Duration
}

func runScript(args []string) error {
	flags := flag.NewFlagSet("script", flag.ContinueOnError)
	endpoint := flags.String("endpoint", "", "http://127.0.0.1:PORT of the COSI state server")
	keyFile := flags.String("key-file", "", "file with the base64 service-account key to sign with")
	ns := flags.String("namespace", "infra-provider:proxmox", "namespace to work in")
	typ := flags.String("type", "Machines.proxmox.infraprovider.sidero.dev", "resource type to work with")
	owner := flags.String("owner", "proxmox.ProvisionController", "owner of the resources created")
	providerID := flags.String("provider-id", "proxmox", "sent as the providerid header, as Omni's Go client does")
	clientKind := flags.String("client", "omni", "omni: with Omni's Go client call options; runtime: the bare cosi-project/runtime adapter")

	if err := flags.Parse(args); err != nil {
		return err
	}

	st, closer, err := connect(*clientKind, *endpoint, *keyFile, *providerID)
	if err != nil {
		return err
	}

	defer closer() //nolint:errcheck

	runner := &scriptRunner{
		st:      st,
		ns:      *ns,
		typ:     *typ,
		owner:   *owner,
		timeout: 20 * time.Second,
	}

	if err = runner.run(); err != nil {
		return err
	}

	emit(map[string]any{"steps": runner.steps})

	return nil
}

// connect returns the COSI state a Go infra provider works with: cosi-project/runtime's protobuf adapter
// over a connection signed by go-api-signature's client interceptor with the providerid header, as Omni's
// Go client (siderolabs/omni/client pkg/client) builds it. kind "omni" adds that client's call options
// too (gzip on every call, 32 MiB messages, 1 min keepalive) and keeps its watch retries; "runtime" is the
// bare adapter with retries off, so that a broken watch shows up in the results. (pkg/client itself is not
// imported: omni/client v1.8.0 needs go-api-signature v0.3.12, while the verifier here is v0.3.13, and
// newer omni/client releases are not served by the module proxy.)
func connect(kind, endpoint, keyFile, providerID string) (state.State, func() error, error) {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--key-file: %w", err)
	}

	serviceAccount := strings.TrimSpace(string(key))

	var (
		extra   []grpc.DialOption
		adapter []cosiclient.AdapterOption
	)

	switch kind {
	case "omni":
		extra = append(extra,
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32*1024*1024), grpc.UseCompressor(gzip.Name)),
			grpc.WithSharedWriteBuffer(true),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute}))
	case "runtime":
		adapter = append(adapter, cosiclient.WithDisableWatchRetry())
	default:
		return nil, nil, fmt.Errorf("--client %q: use omni or runtime", kind)
	}

	conn, err := dialSigned(endpoint, serviceAccount, providerID, extra...)
	if err != nil {
		return nil, nil, err
	}

	return state.WrapCore(cosiclient.NewAdapter(v1alpha1.NewStateClient(conn), adapter...)), conn.Close, nil
}

func dialSigned(endpoint, serviceAccount, providerID string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	target, err := dialTarget(endpoint)
	if err != nil {
		return nil, err
	}

	signer := interceptor.New(interceptor.Options{ServiceAccountBase64: serviceAccount})
	withProviderID := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "providerid", providerID)
	}

	options := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Outermost first: the providerid header is in place before go-api-signature signs the call.
		grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(withProviderID(ctx), method, req, reply, cc, opts...)
			},
			signer.Unary()),
		grpc.WithChainStreamInterceptor(
			func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(withProviderID(ctx), desc, cc, method, opts...)
			},
			signer.Stream()),
	}, extra...)

	return grpc.NewClient(target, options...)
}

// dialTarget turns the Omni-style endpoint URL into a gRPC target (plaintext only: loopback tests).
func dialTarget(endpoint string) (string, error) {
	parsed, err := url.Parse(endpoint)
	if err != nil || parsed.Host == "" {
		return "", fmt.Errorf("--endpoint %q: expected http://127.0.0.1:PORT", endpoint)
	}

	if parsed.Scheme != "http" && parsed.Scheme != "grpc" {
		return "", fmt.Errorf("--endpoint %q: only plaintext (http://, grpc://) is supported here", endpoint)
	}

	return parsed.Host, nil
}

func (r *scriptRunner) newResource(id string, labels map[string]string, spec string) resource.Resource {
	res, err := protobuf.Unmarshal(&v1alpha1.Resource{
		Metadata: &v1alpha1.Metadata{
			Namespace: r.ns,
			Type:      r.typ,
			Id:        id,
			Version:   "undefined",
			Phase:     "running",
			Labels:    labels,
		},
		Spec: &v1alpha1.Spec{ProtoSpec: []byte(spec), YamlSpec: fmt.Sprintf("value: %q\n", spec)},
	})
	if err != nil {
		panic(err)
	}

	return res
}

func (r *scriptRunner) pointer(id string) resource.Pointer {
	return resource.NewMetadata(r.ns, r.typ, id, resource.VersionUndefined)
}

// classify names an error the way the reference client's callers see it.
func classify(err error) string {
	switch {
	case err == nil:
		return ""
	case state.IsNotFoundError(err):
		return "not-found"
	case state.IsOwnerConflictError(err):
		return "owner-conflict"
	case state.IsPhaseConflictError(err):
		return "phase-conflict"
	case state.IsConflictError(err):
		return "conflict"
	case state.IsInvalidWatchBookmarkError(err):
		return "invalid-bookmark"
	default:
		if st, ok := status.FromError(err); ok {
			return "code:" + st.Code().String()
		}

		return "error:" + err.Error()
	}
}

func describe(name string, res resource.Resource, err error) step {
	s := step{Name: name, Error: classify(err)}
	if res == nil || err != nil {
		return s
	}

	md := res.Metadata()
	s.Version = md.Version().String()
	s.Phase = md.Phase().String()
	s.Owner = md.Owner()
	s.Finalizers = slices.Clone([]string(*md.Finalizers()))
	slices.Sort(s.Finalizers)

	labels := []string{}
	for key, value := range md.Labels().Raw() {
		labels = append(labels, key+"="+value)
	}

	slices.Sort(labels)
	s.Labels = strings.Join(labels, ",")

	if protoRes, ok := res.(*protobuf.Resource); ok {
		if marshaled, marshalErr := protoRes.Marshal(); marshalErr == nil {
			s.Spec = string(marshaled.GetSpec().GetProtoSpec())
		}
	}

	return s
}

func (r *scriptRunner) record(s step) { r.steps = append(r.steps, s) }

func (r *scriptRunner) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.timeout)
}

func (r *scriptRunner) create(name, id string, labels map[string]string, spec string, owner string) {
	ctx, cancel := r.ctx()
	defer cancel()

	res := r.newResource(id, labels, spec)
	err := r.st.Create(ctx, res, state.WithCreateOwner(owner))
	r.record(describe(name, res, err))
}

func (r *scriptRunner) get(name, id string) resource.Resource {
	ctx, cancel := r.ctx()
	defer cancel()

	res, err := r.st.Get(ctx, r.pointer(id))
	r.record(describe(name, res, err))

	return res
}

// update sends `base` (a resource as read) with a new spec, keeping its version, as the given owner.
func (r *scriptRunner) update(name string, base resource.Resource, spec, owner string, opts ...state.UpdateOption) {
	ctx, cancel := r.ctx()
	defer cancel()

	md := base.Metadata()
	labels := map[string]string{}
	for key, value := range md.Labels().Raw() {
		labels[key] = value
	}

	res := r.newResource(md.ID(), labels, spec)
	res.Metadata().SetVersion(md.Version())
	res.Metadata().SetPhase(md.Phase())
	res.Metadata().Finalizers().Set(*md.Finalizers())

	if err := res.Metadata().SetOwner(owner); err != nil {
		panic(err)
	}

	err := r.st.Update(ctx, res, append([]state.UpdateOption{state.WithUpdateOwner(owner)}, opts...)...)
	r.record(describe(name, res, err))
}

func (r *scriptRunner) list(name string, query ...resource.LabelQueryOption) {
	ctx, cancel := r.ctx()
	defer cancel()

	var opts []state.ListOption
	if len(query) > 0 {
		opts = append(opts, state.WithLabelQuery(query...))
	}

	items, err := r.st.List(ctx, resource.NewMetadata(r.ns, r.typ, "", resource.VersionUndefined), opts...)

	s := step{Name: name, Error: classify(err), IDs: []string{}}
	for _, item := range items.Items {
		s.IDs = append(s.IDs, item.Metadata().ID()+"@"+item.Metadata().Version().String())
	}

	r.record(s)
}

func (r *scriptRunner) teardown(name, id, owner string) {
	ctx, cancel := r.ctx()
	defer cancel()

	ready, err := r.st.Teardown(ctx, r.pointer(id), state.WithTeardownOwner(owner))

	s := step{Name: name, Error: classify(err)}
	if err == nil {
		s.DestroyReady = &ready
	}

	r.record(s)
}

func (r *scriptRunner) destroy(name, id, owner string) {
	ctx, cancel := r.ctx()
	defer cancel()

	r.record(step{Name: name, Error: classify(r.st.Destroy(ctx, r.pointer(id), state.WithDestroyOwner(owner)))})
}

func (r *scriptRunner) finalizer(name, id, finalizer string, add bool) {
	ctx, cancel := r.ctx()
	defer cancel()

	var err error
	if add {
		err = r.st.AddFinalizer(ctx, r.pointer(id), finalizer)
	} else {
		err = r.st.RemoveFinalizer(ctx, r.pointer(id), finalizer)
	}

	r.record(step{Name: name, Error: classify(err)})
}

// watch is an open WatchKind stream whose events are rendered as "<type> <id>@<version> <phase>".
type watch struct {
	events   chan state.Event
	cancel   context.CancelFunc
	bookmark []byte
}

func (r *scriptRunner) openWatch(name string, opts ...state.WatchKindOption) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{events: make(chan state.Event, 64), cancel: cancel}

	err := r.st.WatchKind(ctx, resource.NewMetadata(r.ns, r.typ, "", resource.VersionUndefined), w.events, opts...)
	r.record(step{Name: name, Error: classify(err)})

	if err != nil {
		cancel()

		return nil
	}

	return w
}

func renderEvent(event state.Event) string {
	switch event.Type {
	case state.Bootstrapped:
		return "bootstrapped"
	case state.Noop:
		return "noop"
	case state.Errored:
		return "errored"
	case state.Created, state.Updated, state.Destroyed:
	}

	md := event.Resource.Metadata()

	return fmt.Sprintf("%s %s@%s %s", strings.ToLower(event.Type.String()), md.ID(), md.Version(), md.Phase())
}

// expect reads exactly `count` events (or until the timeout) and records them; the bookmark of the
// last event read is kept for a later resume.
func (r *scriptRunner) expect(name string, w *watch, count int) {
	s := step{Name: name, Events: []string{}}
	deadline := time.After(r.timeout)

	for len(s.Events) < count {
		select {
		case event := <-w.events:
			s.Events = append(s.Events, renderEvent(event))
			if event.Bookmark != nil {
				w.bookmark = event.Bookmark
			}
		case <-deadline:
			s.Error = fmt.Sprintf("timeout after %d of %d events", len(s.Events), count)
			r.record(s)

			return
		}
	}

	r.record(s)
}

// quiet checks that nothing more arrives for a short while (events a server must not send).
func (r *scriptRunner) quiet(name string, w *watch) {
	s := step{Name: name, Events: []string{}}

	select {
	case event := <-w.events:
		s.Events = append(s.Events, renderEvent(event))
	case <-time.After(300 * time.Millisecond):
	}

	r.record(s)
}

func (r *scriptRunner) run() error {
	prod := map[string]string{"env": "prod", "tier": "web", "rank": "10"}
	dev := map[string]string{"env": "dev", "rank": "9"}
	db := map[string]string{"env": "prod", "tier": "db", "rank": "2"}

	// Create, conflicts on create, read back.
	r.create("create a", "a", prod, "spec-a1", r.owner)
	r.create("create a again", "a", prod, "spec-a1", r.owner)
	r.create("create b", "b", dev, "spec-b1", r.owner)
	r.create("create c", "c", db, "spec-c1", r.owner)
	a := r.get("get a", "a")
	r.get("get missing", "zz")

	if a == nil {
		return errors.New("get a failed; see the steps so far: " + fmt.Sprint(r.steps))
	}

	// Updates: current version, stale version, wrong owner.
	r.update("update a", a, "spec-a2", r.owner)
	r.update("update a stale", a, "spec-a3", r.owner)
	a2 := r.get("get a after update", "a")
	r.update("update a wrong owner", a2, "spec-a3", "someone.else")

	// Label queries (terms ANDed).
	r.list("list all")
	r.list("list env=prod", resource.LabelEqual("env", "prod"))
	r.list("list env=prod,tier exists", resource.LabelEqual("env", "prod"), resource.LabelExists("tier"))
	r.list("list tier missing", resource.LabelExists("tier", resource.NotMatches))
	r.list("list env in dev,qa", resource.LabelIn("env", []string{"dev", "qa"}))
	r.list("list env!=prod", resource.LabelEqual("env", "prod", resource.NotMatches))
	r.list("list rank<3 numeric", resource.LabelLTNumeric("rank", "3"))
	r.list("list rank<3 lexical", resource.LabelLT("rank", "3"))

	// Finalizers block destroy; teardown; expected phase.
	r.finalizer("add finalizer", "a", "interop.Finalizer", true)
	r.finalizer("add finalizer again", "a", "interop.Finalizer", true)
	r.get("get a with finalizer", "a")
	r.teardown("teardown a", "a", r.owner)
	a3 := r.get("get a tearing down", "a")
	r.destroy("destroy a with finalizer", "a", r.owner)
	// The reference checks the owner only when the phase changes: an already tearing-down resource reports
	// its state to anyone.
	r.teardown("teardown a wrong owner when torn down", "a", "someone.else")
	r.update("update a expecting running", a3, "spec-a4", r.owner)
	r.update("update a any phase", a3, "spec-a4", r.owner, state.WithExpectedPhaseAny())
	r.finalizer("remove finalizer", "a", "interop.Finalizer", false)
	r.teardown("teardown a again", "a", r.owner)
	r.teardown("teardown wrong owner", "b", "someone.else")
	r.destroy("destroy a wrong owner", "a", "someone.else")
	r.destroy("destroy a", "a", r.owner)
	r.get("get destroyed a", "a")
	r.destroy("destroy a again", "a", r.owner)
	r.teardown("teardown missing", "a", r.owner)

	// Watch: bootstrap contents and a bookmark, live events, then resume from a bookmark.
	w := r.openWatch("watch kind", state.WithBootstrapContents(true), state.WithBootstrapBookmark(true))
	if w == nil {
		return nil
	}

	r.expect("watch bootstrap", w, 4)

	b := r.get("get b", "b")
	r.update("update b", b, "spec-b2", r.owner)
	r.expect("watch update b", w, 1)

	resumeFrom := w.bookmark
	w.cancel()

	r.create("create d", "d", dev, "spec-d1", r.owner)
	r.teardown("teardown c", "c", r.owner)
	r.destroy("destroy c", "c", r.owner)

	resumed := r.openWatch("watch resume", state.WithKindStartFromBookmark(resumeFrom))
	if resumed != nil {
		r.expect("watch resumed events", resumed, 3)
		r.quiet("watch resumed quiet", resumed)
		resumed.cancel()
	}

	// Label-filtered watch: only matching resources, and an update that stops matching is a destroy.
	filtered := r.openWatch("watch env=dev", state.WithBootstrapContents(true), state.WatchWithLabelQuery(resource.LabelEqual("env", "dev")))
	if filtered != nil {
		r.expect("watch env=dev bootstrap", filtered, 3)

		if d := r.get("get d", "d"); d != nil {
			d.Metadata().Labels().Set("env", "prod")
			r.update("update d to env=prod", d, "spec-d2", r.owner)
		}

		r.expect("watch env=dev after relabel", filtered, 1)
		filtered.cancel()
	}

	if invalid := r.openWatch("watch invalid bookmark", state.WithKindStartFromBookmark([]byte("not a bookmark"))); invalid != nil {
		invalid.cancel()
	}

	return nil
}
