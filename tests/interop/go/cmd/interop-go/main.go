// SPDX-License-Identifier: Apache-2.0
// interop-go runs the reference Go implementations (cosi-project/runtime, siderolabs/go-api-signature)
// against omni-proxmox's C++ client and Omni stand-in. The C++ interop tests (tests/interop) drive it:
//
//	interop-go serve  [--trust-public-key FILE]... [--trust-key FILE]...
//	    the reference in-memory COSI state over gRPC on 127.0.0.1:0, verifying every call's signature
//	interop-go script --endpoint URL --key-file FILE [--namespace NS --type TYPE --owner OWNER]
//	    the reference COSI client (signing with go-api-signature) runs a fixed script, prints JSON results
//	interop-go omni-script --endpoint URL --key-file FILE [--provider-id ID]
//	    the same client against Omni's infra-provider rules (stand-in only), prints JSON results
//	interop-go keygen --provider-id ID --out FILE
//	    an infra-provider service-account key made by go-api-signature
//	interop-go keyinfo --key-file FILE [--sign DATA]
//	    decodes a service-account key with go-api-signature and reports what Omni would check
//
// Every mode prints JSON on stdout and exits non-zero with a message on stderr when it cannot run.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: interop-go serve|script|omni-script|keygen|keyinfo [flags]")
	}

	var err error

	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "script":
		err = runScript(os.Args[2:])
	case "omni-script":
		err = runOmniScript(os.Args[2:])
	case "keygen":
		err = runKeygen(os.Args[2:])
	case "keyinfo":
		err = runKeyinfo(os.Args[2:])
	default:
		fail(fmt.Sprintf("unknown mode %q: use serve, script, omni-script, keygen or keyinfo", os.Args[1]))
	}

	if err != nil {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "interop-go:", message)
	os.Exit(2)
}

// stdout is shared by the gRPC handlers of `serve`; one JSON document per line, never interleaved.
var stdoutMu sync.Mutex

func emit(value any) {
	line, err := json.Marshal(value)
	if err != nil {
		panic(err)
	}

	stdoutMu.Lock()
	defer stdoutMu.Unlock()

	os.Stdout.Write(append(line, '\n')) //nolint:errcheck
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return fmt.Sprint(*l) }

func (l *stringList) Set(value string) error {
	*l = append(*l, value)

	return nil
}
