#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to build and run fink and its
# local services: a C toolchain, pkg-config, libssl-dev and zlib1g-dev
# (librdkafka is built from source), a Java 17 JDK (Kafka's broker; the HDFS
# test launcher), Maven (Kafka's and Hadoop's jars come from Maven Central),
# python3-venv (fink-client and the test S3 server). Shared by
# integration/up.sh and .ci/run. Uses sudo when not root.
set -euo pipefail
need=()
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "install_deps: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "install_deps: cargo not found: install Rust first (https://rustup.rs)" >&2
  exit 1
fi
