// SPDX-License-Identifier: Apache-2.0
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/siderolabs/go-api-signature/pkg/pgp"
	"github.com/siderolabs/go-api-signature/pkg/serviceaccount"
)

// Omni's limit for service-account keys (ServiceAccountMaxAllowedLifetime).
const serviceAccountMaxLifetime = 365 * 24 * time.Hour

// runKeygen makes a key the way `omnictl infraprovider create` does: go-api-signature's GenerateKey with
// the provider's service-account email, encoded with serviceaccount.Encode.
func runKeygen(args []string) error {
	flags := flag.NewFlagSet("keygen", flag.ContinueOnError)
	providerID := flags.String("provider-id", "", "infra provider ID")
	out := flags.String("out", "", "file to write the base64 key to (mode 0600)")

	if err := flags.Parse(args); err != nil {
		return err
	}

	if *providerID == "" || *out == "" {
		return errors.New("keygen needs --provider-id and --out")
	}

	email := *providerID + "@infra-provider.serviceaccount.omni.sidero.dev"

	key, err := pgp.GenerateKey(*providerID, "linux/amd64", email, serviceAccountMaxLifetime)
	if err != nil {
		return err
	}

	name := "infra-provider:" + *providerID

	encoded, err := serviceaccount.Encode(name, key)
	if err != nil {
		return err
	}

	if err = os.WriteFile(*out, []byte(encoded), 0o600); err != nil {
		return err
	}

	emit(map[string]any{"name": name, "fingerprint": key.Fingerprint()})

	return nil
}

// runKeyinfo decodes a key with go-api-signature and applies the checks Omni makes when a service-account
// key is registered (lifetime at most 365 days, primary user ID an email address, not expired), then
// signs --sign DATA so that the caller can verify the signature with its own implementation.
func runKeyinfo(args []string) error {
	flags := flag.NewFlagSet("keyinfo", flag.ContinueOnError)
	keyFile := flags.String("key-file", "", "file with a base64 service-account key")
	data := flags.String("sign", "", "data to sign with the key (detached, binary, base64 in the output)")

	if err := flags.Parse(args); err != nil {
		return err
	}

	encoded, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("--key-file: %w", err)
	}

	account, err := serviceaccount.Decode(strings.TrimSpace(string(encoded)))
	if err != nil {
		return fmt.Errorf("go-api-signature cannot decode the key: %w", err)
	}

	unlocked, err := account.Key.IsUnlocked()
	if err != nil {
		return err
	}

	info := map[string]any{
		"name":        account.Name,
		"fingerprint": account.Key.Fingerprint(),
		"private":     account.Key.IsPrivate(),
		"unlocked":    unlocked,
		"expired":     account.Key.IsExpired(0),
	}

	validateErr := account.Key.Validate(pgp.WithMaxAllowedLifetime(serviceAccountMaxLifetime))
	info["omni_validation"] = "ok"

	if validateErr != nil {
		info["omni_validation"] = validateErr.Error()
	}

	if *data != "" {
		signature, signErr := account.Key.Sign([]byte(*data))
		if signErr != nil {
			return fmt.Errorf("sign: %w", signErr)
		}

		info["signature"] = base64.StdEncoding.EncodeToString(signature)
		// Round trip through the verifier Omni uses.
		info["self_verified"] = account.Key.Verify([]byte(*data), signature) == nil
	}

	emit(info)

	return nil
}
