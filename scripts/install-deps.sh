#!/usr/bin/env bash
# Installs the Debian 12 packages Strata builds and tests with, and only those that are missing.
# Idempotent: a second run with everything present does nothing and touches no package list.
# Uses sudo when not root. Nothing is downloaded from anywhere but Debian's registry.
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config ccache
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libabsl-dev
  nlohmann-json3-dev libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev libcpp-httplib-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev
  liburing-dev libcurl4-openssl-dev prometheus-cpp-dev libssl-dev zlib1g-dev
  libxxhash-dev libspdlog-dev libicu-dev
)
# Tools the tests drive as real peers: python3 serves files in the hub layout for the download
# test and runs the gRPC client; curl and node (the official `openai` npm client) talk HTTP;
# prometheus scrapes /metrics and its promtool checks the exposition; gnuplot draws the plots of
# `strata bench`.
TEST_PKGS=(python3 python3-grpcio python3-grpc-tools curl nodejs prometheus gnuplot-nox)

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

# npm ships inside some nodejs builds (NodeSource) and as its own package in Debian's.
command -v npm >/dev/null || missing+=(npm)
# kubectl renders the Kubernetes manifests (`kubectl kustomize`, tests/deploy). Any kubectl will
# do (the manifests stay within kustomize v2.0.3); Debian's is kubernetes-client (kubectl 1.20).
command -v kubectl >/dev/null || missing+=(kubernetes-client)

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#BUILD_PKGS[@]} build and ${#TEST_PKGS[@]} test packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
