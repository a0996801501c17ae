#!/usr/bin/env bash
# Installs missing Debian packages, then configures and builds into build/.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hasten_setup
