#!/usr/bin/env bash
# Deploy, inspect or delete the Route Counter CloudFormation stack. Run ./deploy.sh --help.
#
# A thin entry point: it makes sure .venv is complete, then hands over to Python, where the
# deploy flow lives (deployer/, on boto3) and the local stack (local/, with --local).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { # die MESSAGE: print one line on stderr and exit 1
	printf 'error: %s\n' "$*" >&2
	exit 1
}

step() { printf '==> %s\n' "$*"; }

# .venv is complete once make wrote its stamp, after the last package installed; an older
# stamp than requirements.txt, or none (a first or interrupted install), rebuilds it.
ensure_venv() {
	local stamp=$ROOT/.venv/.installed
	if [[ ! -f $stamp || $ROOT/requirements.txt -nt $stamp ]]; then
		command -v make >/dev/null 2>&1 ||
			die "$ROOT/.venv is missing or incomplete and make is not installed: install make, then run 'make venv'"
		if [[ -d $ROOT/.venv ]]; then
			step ".venv is incomplete or out of date: rebuilding it (make venv)"
		else
			step "No .venv yet: creating it (make venv)"
		fi
		make -C "$ROOT" --no-print-directory venv >&2 || die "make venv failed (see above)"
	fi
}

# --local: everything but --local itself goes to the local runner.
for arg in "$@"; do
	if [[ $arg == --local ]]; then
		local_args=()
		for a in "$@"; do
			[[ $a == --local ]] || local_args+=("$a")
		done
		ensure_venv
		export ROUTE_COUNTER_CALLER_DIR=$PWD # a Backend=file:PATH is relative to it
		cd "$ROOT"
		exec .venv/bin/python -m local ${local_args[@]+"${local_args[@]}"}
	fi
done

ensure_venv
cd "$ROOT"
exec .venv/bin/python -m deployer ${1+"$@"}
