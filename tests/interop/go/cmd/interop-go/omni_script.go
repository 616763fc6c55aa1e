// SPDX-License-Identifier: Apache-2.0
package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/omni/client/api/omni/specs"
	"github.com/siderolabs/omni/client/pkg/omni/resources/infra"
)

const providerIDLabel = "omni.sidero.dev/infra-provider-id"

// runOmniScript exercises the Omni rules an infra provider meets (omni-protocol.md §2.5) with Omni's typed
// resources (siderolabs/omni/client pkg/omni/resources/infra, registered for protobuf decoding) over a
// connection made like Omni's Go client: the stand-in's specs must decode with Omni's real protobuf types and its access rules must accept exactly the writes the Go infra library
// makes. The reference state server has no such rules, so only the stand-in runs this. It expects
// MachineRequests for the provider to exist already.
func runOmniScript(args []string) error {
	flags := flag.NewFlagSet("omni-script", flag.ContinueOnError)
	endpoint := flags.String("endpoint", "", "http://127.0.0.1:PORT of the Omni stand-in")
	keyFile := flags.String("key-file", "", "file with the base64 infra-provider key to sign with")
	providerID := flags.String("provider-id", "proxmox", "the provider the key belongs to")

	if err := flags.Parse(args); err != nil {
		return err
	}

	st, closer, err := connect("omni", *endpoint, *keyFile, *providerID)
	if err != nil {
		return err
	}

	defer closer() //nolint:errcheck

	r := &omniRunner{st: st, owner: *providerID + ".ProvisionController"}

	if err = r.run(*providerID); err != nil {
		return err
	}

	emit(map[string]any{"steps": r.steps})

	return nil
}

type omniRunner struct {
	st    state.State
	owner string
	steps []step
}

func (r *omniRunner) record(s step) { r.steps = append(r.steps, s) }

func (r *omniRunner) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

func requestSpec(request *infra.MachineRequest) string {
	spec := request.TypedSpec().Value

	return fmt.Sprintf("talos_version=%s provider_data=%q", spec.TalosVersion, spec.ProviderData)
}

func (r *omniRunner) getRequest(name, id string) *infra.MachineRequest {
	ctx, cancel := r.ctx()
	defer cancel()

	request, err := r.st.Get(ctx, infra.NewMachineRequest(id).Metadata())
	s := describe(name, request, err)

	typed, ok := request.(*infra.MachineRequest)
	if err == nil && !ok {
		s.Error = fmt.Sprintf("decoded as %T, not Omni's typed MachineRequest", request)
	}

	if ok {
		s.Spec = requestSpec(typed)
	}

	r.record(s)

	return typed
}

func (r *omniRunner) write(name string, write func(ctx context.Context) error) {
	ctx, cancel := r.ctx()
	defer cancel()

	r.record(step{Name: name, Error: classify(write(ctx))})
}

func (r *omniRunner) run(providerID string) error {
	ctx, cancel := r.ctx()
	defer cancel()

	// Only this provider's requests are visible (label-filtered by Omni), decoded as Omni's typed resource.
	requests, err := r.st.List(ctx, infra.NewMachineRequest("").Metadata())
	listed := step{Name: "list machine requests", Error: classify(err), IDs: []string{}}
	labelValues := []string{}

	for _, item := range requests.Items {
		listed.IDs = append(listed.IDs, item.Metadata().ID())
		value, _ := item.Metadata().Labels().Get(providerIDLabel)
		labelValues = append(labelValues, value)

		if request, ok := item.(*infra.MachineRequest); ok {
			listed.Spec = requestSpec(request)
		} else {
			listed.Error = fmt.Sprintf("decoded as %T, not Omni's typed MachineRequest", item)
		}
	}

	slices.Sort(listed.IDs)
	slices.Sort(labelValues)
	listed.Labels = strings.Join(slices.Compact(labelValues), ",")
	r.record(listed)

	if len(listed.IDs) == 0 {
		return nil
	}

	requestID := listed.IDs[0]
	pointer := infra.NewMachineRequest(requestID).Metadata()

	// Finalizer-only updates of Omni-owned inputs are allowed: Omni's Go client re-encodes the typed spec.
	r.write("add finalizer to machine request", func(ctx context.Context) error {
		return r.st.AddFinalizer(ctx, pointer, r.owner)
	})
	r.getRequest("get machine request", requestID)
	r.write("remove finalizer from machine request", func(ctx context.Context) error {
		return r.st.RemoveFinalizer(ctx, pointer, r.owner)
	})

	// Anything else on a MachineRequest is refused.
	if request := r.getRequest("get machine request again", requestID); request != nil {
		relabeled := request.DeepCopy()
		relabeled.Metadata().Labels().Set("tampered", "yes")
		r.write("update machine request labels", func(ctx context.Context) error {
			return r.st.Update(ctx, relabeled, state.WithUpdateOwner(request.Metadata().Owner()), state.WithExpectedPhaseAny())
		})

		respecced := request.DeepCopy().(*infra.MachineRequest) //nolint:forcetypeassert,errcheck
		respecced.TypedSpec().Value.ProviderData = "cores: 64\n"
		r.write("update machine request spec", func(ctx context.Context) error {
			return r.st.Update(ctx, respecced, state.WithUpdateOwner(request.Metadata().Owner()), state.WithExpectedPhaseAny())
		})
	}

	r.write("destroy machine request", func(ctx context.Context) error {
		return r.st.Destroy(ctx, pointer, state.WithDestroyOwner(""))
	})

	// A MachineRequestStatus is the provider's to write; Omni labels it with the provider ID.
	status := infra.NewMachineRequestStatus(requestID)
	status.TypedSpec().Value.Stage = specs.MachineRequestStatusSpec_PROVISIONING
	status.TypedSpec().Value.Status = "interop"
	r.write("create machine request status", func(ctx context.Context) error {
		return r.st.Create(ctx, status, state.WithCreateOwner(r.owner))
	})

	readStatus, err := r.st.Get(ctx, status.Metadata())
	statusStep := describe("get machine request status", readStatus, err)

	if typed, ok := readStatus.(*infra.MachineRequestStatus); ok {
		statusStep.Spec = fmt.Sprintf("stage=%s status=%s", typed.TypedSpec().Value.Stage, typed.TypedSpec().Value.Status)
		statusStep.Finalizers = nil // Omni's cleanup controller adds its finalizer asynchronously
	}

	r.record(statusStep)

	r.write("destroy machine request status wrong owner", func(ctx context.Context) error {
		return r.st.Destroy(ctx, status.Metadata(), state.WithDestroyOwner("someone.else"))
	})

	// Singleton provider resources must be named after the provider.
	r.write("create provider status for another id", func(ctx context.Context) error {
		return r.st.Create(ctx, infra.NewProviderStatus("someone-else"))
	})

	providerStatus := infra.NewProviderStatus(providerID)
	providerStatus.TypedSpec().Value.Name = "Proxmox"
	providerStatus.TypedSpec().Value.Description = "interop"
	r.write("create provider status", func(ctx context.Context) error {
		return r.st.Create(ctx, providerStatus)
	})

	// Outside the infra namespaces the provider may read a few types only.
	clusters := resource.NewMetadata("default", "Clusters.omni.sidero.dev", "", resource.VersionUndefined)
	_, err = r.st.List(ctx, clusters)
	r.record(step{Name: "list clusters", Error: classify(err)})

	return nil
}
