#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release, in build/), then runs flash-mla-bench with
# the arguments given (none: the default workload; --help lists the options).
#   bash scripts/run.sh
#   bash scripts/run.sh --grid perf --json perf.json
set -euo pipefail
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

configure_and_build flash-mla-bench
exec "$BUILD_DIR/cli/flash-mla-bench" "$@"
