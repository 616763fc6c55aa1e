#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The container image's checks (`make image-test`, CI), on the image scripts/image.sh built:
#   1. labels, user, entrypoint and HEALTHCHECK are what the docs promise;
#   2. `omni-proxmox --format json demo --fast` inside it provisions and joins 6 machines and
#      leaves 0 VMs, in a read-only container with no capabilities;
#   3. the image's provider, started with the compose stack's settings (Go provider flags, the key
#      as a secret file under /run/secrets, OMNI_PROXMOX_LISTEN), serves a Proxmox simulator and an
#      Omni stand-in on the host's loopback: 2 machines provisioned, then torn down; its process
#      is not root and `podman healthcheck run` reports it healthy.
# The simulators run from the same image in their own containers on the host network. Everything
# it starts is removed on exit; it sends traffic to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export CONTAINERS_CONF="$repo/deploy/podman/containers.conf"
engine=${CONTAINER_ENGINE:-podman}
image=${IMAGE:-omni-proxmox:dev}
tag="op-image-test-$$"
work=$(mktemp -d /tmp/omni-proxmox-image-test.XXXXXX)
started=$(date +%s)
containers=()

cleanup() {
  for c in "${containers[@]}"; do "$engine" rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "image-test: FAIL: $*" >&2
  for c in "${containers[@]}"; do
    echo "--- logs of $c" >&2
    "$engine" logs "$c" 2>&1 | tail -n 40 >&2 || true
  done
  exit 1
}
pass() { echo "image-test: ok: $*"; }

# JSON field of a document on stdin: json_get KEY [KEY...] (nested).
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1:]: d=d[int(k)] if isinstance(d,list) else d[k]
print(d if not isinstance(d,(dict,list,bool)) else json.dumps(d))' "$@"; }

# Waits up to $1 seconds for the command after it to succeed.
eventually() {
  local timeout=$1
  shift
  local deadline=$(($(date +%s) + timeout))
  until "$@"; do
    (($(date +%s) < deadline)) || return 1
    sleep 1
  done
}

"$engine" image exists "$image" || fail "no image $image; run make image"
version=$(sed -n 's/^project(omni-proxmox VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)

# 1. Metadata.
inspect() { "$engine" image inspect --format "$1" "$image"; }
[[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.licenses"}}')" == Apache-2.0 ]] || fail "licenses label"
[[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" == "$version" ]] || fail "version label"
[[ -n "$(inspect '{{index .Config.Labels "org.opencontainers.image.revision"}}')" ]] || fail "revision label"
[[ "$(inspect '{{.Config.User}}')" == 10001:10001 ]] || fail "user is $(inspect '{{.Config.User}}'), want 10001:10001"
[[ "$(inspect '{{json .Config.Entrypoint}}')" == '["omni-proxmox"]' ]] || fail "entrypoint"
[[ "$(inspect '{{json .Config.Cmd}}')" == '["run"]' ]] || fail "default command"
# podman reports the HEALTHCHECK at the top level of the inspection, docker under Config.
healthcheck=$("$engine" image inspect "$image" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]
print(json.dumps((d.get("Healthcheck") or d["Config"].get("Healthcheck") or {}).get("Test")))')
[[ "$healthcheck" == '["CMD", "omni-proxmox", "healthcheck"]' ]] || fail "HEALTHCHECK is $healthcheck"
size=$(inspect '{{.Size}}')
pass "labels, user 10001, entrypoint, HEALTHCHECK; image size $((size / 1024 / 1024)) MiB"

# 2. The demo inside the image.
demo=$("$engine" run --rm --read-only --cap-drop=ALL --network=host "$image" --format json demo --fast | tail -n 1)
for check in "machines_provisioned 6" "machines_joined 6" "vms_remaining 0" "ok true"; do
  read -r key want <<<"$check"
  got=$(json_get "$key" <<<"$demo")
  [[ "${got,,}" == "$want" ]] || fail "demo $key is $got, want $want: $demo"
done
pass "demo inside the image: 6 provisioned, 6 joined, 0 remaining ($(json_get duration_s <<<"$demo") s)"

# 3. The provider container against simulators on the host's loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The simulator's endpoint document: the first JSON line on its stdout that has KEY (its log lines,
# on stderr, are JSON too and may come first in the container's log).
endpoints() { "$engine" logs "$1" 2>/dev/null | grep -m1 "^{.*\"$2\"" || true; }
mkdir -p "$work/keys" "$work/secrets"
chown 10001:10001 "$work/keys"

"$engine" run -d --name "$tag-pve" --network=host --read-only "$image" \
  --format json pve-sim --listen 127.0.0.1:0 --time-scale 25 >/dev/null
containers+=("$tag-pve")
"$engine" run -d --name "$tag-omni" --network=host --read-only -v "$work/keys:/keys" "$image" \
  --format json omni-sim --provider-id proxmox --keys-dir /keys --grpc-port 0 --factory-port 0 --control-port 0 >/dev/null
containers+=("$tag-omni")
started_with() { [[ -n "$(endpoints "$1" "$2")" ]]; }
eventually 60 started_with "$tag-pve" token_id || fail "pve-sim did not start"
eventually 60 started_with "$tag-omni" grpc_endpoint || fail "omni-sim did not start"
pve=$(endpoints "$tag-pve" token_id)
omni=$(endpoints "$tag-omni" grpc_endpoint)
pve_url=$(json_get url <<<"$pve")
sim_state="${pve_url%/api2/json}/_sim/state"
ctl=$(json_get control_url <<<"$omni")
grpc=$(json_get grpc_endpoint <<<"$omni")

# The compose stack's layout: config.yaml and the secrets side by side under /run/secrets.
cat >"$work/secrets/config.yaml" <<EOF
proxmox:
  url: "$pve_url"
  tokenID: "$(json_get token_id <<<"$pve")"
  tokenSecretFile: pve-token-secret
EOF
json_get token_secret <<<"$pve" >"$work/secrets/pve-token-secret"
cp "$work/keys/proxmox.key" "$work/secrets/omni-infra-provider.key"
chown 10001:10001 "$work/secrets"/*
chmod 0400 "$work/secrets"/*
listen_port=$(free_port)
"$engine" run -d --name "$tag-provider" --network=host --read-only --cap-drop=ALL \
  --security-opt no-new-privileges -v "$work/secrets:/run/secrets:ro" \
  -e OMNI_INFRA_PROVIDER_KEY_FILE=/run/secrets/omni-infra-provider.key \
  -e OMNI_PROXMOX_LISTEN="127.0.0.1:$listen_port" \
  "$image" --config-file=/run/secrets/config.yaml --omni-api-endpoint="$grpc" >/dev/null
containers+=("$tag-provider")

connected() { [[ "$(curl -fsS "$ctl/status" | json_get provider_connected)" == true ]]; }
eventually 60 connected || fail "the provider did not connect to the Omni stand-in"
eventually 60 "$engine" exec "$tag-provider" omni-proxmox healthcheck --ready >/dev/null ||
  fail "the provider never became ready"
health=$("$engine" healthcheck run "$tag-provider" 2>&1) || fail "podman healthcheck run: $health"
uid=$("$engine" exec "$tag-provider" sh -c 'sed -n "s/^Uid:\t\([0-9]*\).*/\1/p" /proc/1/status')
[[ "$uid" == 10001 ]] || fail "the provider runs as uid $uid"
pass "provider connected, ready, HEALTHCHECK healthy, running as uid $uid"

printf 'cores: 2\nmemory: 2048\ndisk_size: 10\nstorage_selector: type == "lvmthin"\n' >"$work/providerdata.yaml"
curl -fsS -X PUT --data-binary @"$work/providerdata.yaml" "$ctl/machine-classes/workers" >/dev/null
curl -fsS -X PUT -d '' "$ctl/machine-request-sets/workers?machine_class=workers&count=2" >/dev/null
provisioned() {
  curl -fsS "$ctl/status" | python3 -c 'import json,sys
r=json.load(sys.stdin)["machine_requests"]
sys.exit(0 if len(r)==2 and all(x.get("stage")=="PROVISIONED" for x in r) else 1)'
}
vms() { curl -fsS "$sim_state" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["vms"]))'; }
eventually 180 provisioned || fail "2 machines were not provisioned: $(curl -fsS "$ctl/status")"
[[ "$(vms)" == 2 ]] || fail "the simulator has $(vms) VMs, want 2"
pass "2 machines provisioned (2 VMs on the simulator)"

curl -fsS -X PUT -d '' "$ctl/machine-request-sets/workers?machine_class=workers&count=0" >/dev/null
torn_down() {
  [[ "$(curl -fsS "$ctl/status" | json_get machine_requests)" == "[]" && "$(vms)" == 0 ]]
}
eventually 180 torn_down || fail "teardown incomplete: $(curl -fsS "$ctl/status"); $(vms) VMs left"
pass "2 machines torn down (0 requests, 0 VMs)"

"$engine" stop -t 30 "$tag-provider" >/dev/null
code=$("$engine" inspect --format '{{.State.ExitCode}}' "$tag-provider")
[[ "$code" == 0 ]] || fail "the provider exited $code on SIGTERM"
if "$engine" logs "$tag-provider" 2>&1 | grep -qF "$(cat "$work/secrets/pve-token-secret")"; then
  fail "the Proxmox token secret appears in the provider's log"
fi
pass "provider stopped cleanly on SIGTERM; no secret in its log"
echo "image-test: all checks passed in $(($(date +%s) - started)) s"
