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


# .venv made once, and again when requirements.txt changes or a first install was stopped:
# bootstrap.py says what it does (on stderr, so that stdout keeps only the command's output).
ensure_venv() {
	local python=${PYTHON:-python3}
	command -v "$python" >/dev/null 2>&1 ||
		die "$python is not installed: install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)"
	"$python" "$ROOT/bootstrap.py" "$ROOT/.venv" "$ROOT/requirements.txt" >&2 || exit $?
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
