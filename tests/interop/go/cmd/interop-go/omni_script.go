package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/protobuf/client"
)

const (
	infraProviderNs          = "infra-provider"
	machineRequestType       = "MachineRequests.omni.sidero.dev"
	machineRequestStatusType = "MachineRequestStatuses.omni.sidero.dev"
	infraProviderStatusType  = "InfraProviderStatuses.omni.sidero.dev"
	providerIDLabel          = "omni.sidero.dev/infra-provider-id"
)

// runOmniScript exercises the Omni rules an infra provider meets (omni-protocol.md §2.5) with the
// reference Go client: these have no counterpart in the reference state server, so only the stand-in
// runs them. It expects MachineRequests for the provider to exist already.
func runOmniScript(args []string) error {
	flags := flag.NewFlagSet("omni-script", flag.ContinueOnError)
	endpoint := flags.String("endpoint", "", "http://127.0.0.1:PORT of the Omni stand-in")
	keyFile := flags.String("key-file", "", "file with the base64 infra-provider key to sign with")
	providerID := flags.String("provider-id", "proxmox", "the provider the key belongs to")

	if err := flags.Parse(args); err != nil {
		return err
	}

	conn, err := dialSigned(*endpoint, *keyFile, *providerID)
	if err != nil {
		return err
	}

	defer conn.Close() //nolint:errcheck

	st := state.WrapCore(client.NewAdapter(v1alpha1.NewStateClient(conn), client.WithDisableWatchRetry()))
	r := &scriptRunner{st: st, ns: infraProviderNs, typ: machineRequestType, owner: *providerID + ".ProvisionController", timeout: 20 * time.Second}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Only this provider's requests are visible (label-filtered by Omni).
	requests, err := st.List(ctx, resource.NewMetadata(infraProviderNs, machineRequestType, "", resource.VersionUndefined))
	listed := step{Name: "list machine requests", Error: classify(err), IDs: []string{}, Labels: ""}

	labelValues := []string{}
	for _, item := range requests.Items {
		listed.IDs = append(listed.IDs, item.Metadata().ID())
		value, _ := item.Metadata().Labels().Get(providerIDLabel)
		labelValues = append(labelValues, value)
	}

	slices.Sort(listed.IDs)
	listed.Labels = strings.Join(slices.Compact(labelValues), ",")
	r.record(listed)

	if len(listed.IDs) == 0 {
		emit(map[string]any{"steps": r.steps})

		return nil
	}

	requestID := listed.IDs[0]
	finalizer := r.owner

	// Finalizer-only updates of Omni-owned inputs are allowed (the Go client re-sends the spec it read).
	r.finalizer("add finalizer to machine request", requestID, finalizer, true)
	withFinalizer := r.get("get machine request", requestID)
	r.finalizer("remove finalizer from machine request", requestID, finalizer, false)

	// Anything else on a MachineRequest is refused.
	if withFinalizer != nil {
		current := r.get("get machine request again", requestID)
		if current != nil {
			current.Metadata().Labels().Set("tampered", "yes")
			r.update("update machine request labels", current, r.spec(current), current.Metadata().Owner(), state.WithExpectedPhaseAny())
		}
	}

	r.destroy("destroy machine request", requestID, "")

	// A MachineRequestStatus is the provider's to write; Omni labels it with the provider ID.
	status := &scriptRunner{st: st, ns: infraProviderNs, typ: machineRequestStatusType, owner: r.owner, timeout: r.timeout}
	status.steps = r.steps
	status.create("create machine request status", requestID, map[string]string{}, "", status.owner)
	status.get("get machine request status", requestID)
	status.destroy("destroy machine request status wrong owner", requestID, "someone.else")

	// Singleton provider resources must be named after the provider.
	singleton := &scriptRunner{st: st, ns: infraProviderNs, typ: infraProviderStatusType, owner: "", timeout: r.timeout}
	singleton.steps = status.steps
	singleton.create("create provider status for another id", "someone-else", map[string]string{}, "", "")
	singleton.create("create provider status", *providerID, map[string]string{}, "", "")

	// Outside the infra namespaces the provider may read a few types only.
	other := &scriptRunner{st: st, ns: "default", typ: "Clusters.omni.sidero.dev", owner: "", timeout: r.timeout}
	other.steps = singleton.steps
	other.list("list clusters")
	other.get("get cluster", "talos-default")

	emit(map[string]any{"steps": other.steps})

	return nil
}

// spec returns the proto spec bytes of a resource as read, so an update can send them back unchanged.
func (r *scriptRunner) spec(res resource.Resource) string {
	if protoRes, ok := res.(*protobuf.Resource); ok {
		if marshaled, err := protoRes.Marshal(); err == nil {
			return string(marshaled.GetSpec().GetProtoSpec())
		}
	}

	panic(fmt.Sprintf("%s is not a raw protobuf resource", res.Metadata().ID()))
}
