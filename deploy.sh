#!/usr/bin/env bash
# Deploy, inspect or delete the Route Counter CloudFormation stack. Run ./deploy.sh --help.
#
# Creates and updates go through change sets (create, review, execute), so --dry-run is the
# same path minus the execute. Every AWS call goes through the AWS CLI, so AWS_ENDPOINT_URL
# (e.g. a moto_server) and the usual credentials, profiles and regions apply.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=./deploy.sh
POLL_SECONDS=3 # between describe calls while waiting on CloudFormation
TABLE_ID=CounterTable # logical id of the table the stack policy protects

usage() {
	cat <<'EOF'
Usage: ./deploy.sh [--stack-name NAME] [--region R] [--profile P] [--param Key=Value]...
                   [--s3-bucket B] [--dry-run] [--no-smoke]
       ./deploy.sh --delete [--yes] [--stack-name NAME] [--region R] [--profile P]
       ./deploy.sh --local [--port N] [--param Key=Value]... [--stack-name NAME]

Generates the Route Counter template (python generate.py), lints it (cfn-lint), creates
or updates the CloudFormation stack through a change set while showing its events, sets
a stack policy that protects the counter table, prints the outputs (ApiUrl...) and
smoke-tests the API (two requests to a fresh path must count 1, then 2).

Options:
  --stack-name NAME   stack name (default: route-counter)
  --region R          AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)
  --profile P         AWS CLI profile
  --param Key=Value   set a template parameter (repeatable). Unset parameters take the
                      template default on create and keep their current value on update
  --s3-bucket B       upload the template to S3 bucket B (yours, in the stack's region)
                      and deploy it from there; needed only for a template over the
                      51,200 bytes CloudFormation takes inline
  --dry-run           create a change set, print what would change, then delete it
  --no-smoke          skip the smoke test
  --delete            delete the stack; the counter table is kept (DeletionPolicy Retain)
  --yes               with --delete: do not ask for confirmation (needed without a terminal)
  --local [ARGS...]   run the API locally instead: every other argument goes to
                      'python -m local' (e.g. --port, --param, --stack-name)
  --port N            with --local: local port to listen on
  -h, --help          show this help

Environment:
  AWS_ENDPOINT_URL    send every AWS call there (e.g. a moto_server); skips the smoke test
  AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...  as for the AWS CLI

Exit status: 0 done (also when there was nothing to change), 1 failed, 2 bad usage.
EOF
}

die() { # die [CODE] MESSAGE: print one line on stderr and exit (default code 1)
	local code=1
	if [[ $1 =~ ^[0-9]+$ ]]; then
		code=$1
		shift
	fi
	printf 'error: %s\n' "$*" >&2
	exit "$code"
}

usage_error() { die 2 "$* (see $PROG --help)"; }

step() { printf '==> %s\n' "$*"; }

# --- --local: hand everything but --local itself to the local runner --------------------

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

for arg in "$@"; do
	if [[ $arg == --local ]]; then
		local_args=()
		for a in "$@"; do
			[[ $a == --local ]] || local_args+=("$a")
		done
		ensure_venv
		cd "$ROOT"
		exec .venv/bin/python -m local ${local_args[@]+"${local_args[@]}"}
	fi
done

# --- options --------------------------------------------------------------------------------

STACK=route-counter
REGION=""
PROFILE=""
PARAMS=()
S3_BUCKET=""
DRY_RUN=0
SMOKE=1
DELETE=0
YES=0

need_value() { # need_value OPTION ARGC [VALUE]
	if (($2 < 2)) || [[ $3 == -* ]]; then
		usage_error "$1 needs a value"
	fi
}

while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--stack-name | --region | --profile | --param | --s3-bucket)
		need_value "$1" "$#" "${2-}"
		case $1 in
		--stack-name) STACK=$2 ;;
		--s3-bucket)
			[[ $2 =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
				usage_error "--s3-bucket '$2' is not an S3 bucket name"
			S3_BUCKET=$2
			;;
		--region) REGION=$2 ;;
		--profile) PROFILE=$2 ;;
		--param)
			[[ $2 =~ ^[A-Za-z0-9]+=.*$ ]] ||
				usage_error "--param '$2' is not Key=Value (e.g. --param LogRetentionDays=14)"
			PARAMS+=("$2")
			;;
		esac
		shift 2
		;;
	--dry-run) DRY_RUN=1 && shift ;;
	--no-smoke) SMOKE=0 && shift ;;
	--delete) DELETE=1 && shift ;;
	--yes) YES=1 && shift ;;
	--port) usage_error "--port is an option of --local ($PROG --local --port N)" ;;
	*) usage_error "unknown option '$1'" ;;
	esac
done

[[ $STACK =~ ^[A-Za-z][-A-Za-z0-9]{0,127}$ ]] ||
	usage_error "invalid stack name '$STACK': letters, digits and hyphens, starting with a letter"
if ((DELETE)); then
	((${#PARAMS[@]} == 0 && !DRY_RUN)) && [[ -z $S3_BUCKET ]] ||
		usage_error "--delete takes no --param, --s3-bucket or --dry-run"
	if ((!YES)) && [[ ! -t 0 ]]; then
		die 2 "refusing to delete stack $STACK without confirmation: no terminal to ask on;" \
			"pass --yes to delete it from a script"
	fi
elif ((YES)); then
	usage_error "--yes only applies to --delete"
fi

# --- tools ------------------------------------------------------------------------------------

ensure_venv
PY=$ROOT/.venv/bin/python
tool() { # tool NAME: the venv's NAME, else the one on PATH
	if [[ -x $ROOT/.venv/bin/$1 ]]; then
		printf '%s\n' "$ROOT/.venv/bin/$1"
	else
		command -v "$1" || true
	fi
}
AWS=$(tool aws)
[[ -n $AWS ]] || die "AWS CLI not found: run 'make venv' (it installs awscli into .venv)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/deploy.XXXXXX")
LINT_PID=""
cleanup() {
	if [[ -n $LINT_PID ]]; then kill "$LINT_PID" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# Small JSON helpers, in Python (the venv's): reading files written by the AWS CLI.
pyhelp() {
	"$PY" - "$@" <<'PY'
import json
import sys
from datetime import datetime


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_params(template, *given):
    """Every --param names a parameter of the template."""
    declared = list(load(template).get("Parameters", {}))
    unknown = [kv.split("=", 1)[0] for kv in given if kv.split("=", 1)[0] not in declared]
    if unknown:
        sys.exit(
            f"error: unknown template parameter {', '.join(unknown)} "
            f"(the template's parameters: {', '.join(declared)})"
        )


def params(template, mode, stack_json, out, *given):
    """--parameters for the change set: given values, and on update the previous ones."""
    declared = list(load(template).get("Parameters", {}))
    values = dict(kv.split("=", 1) for kv in given)
    result = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    previous = {}
    if mode == "UPDATE":
        stack = load(stack_json)["Stacks"][0]
        previous = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
        # Parameters not given keep their value. An empty one is left out, which
        # CloudFormation resolves to the template default (empty for each of ours): moto
        # 5.2.5 fails an update given KmsKeyArn="" even though nothing changes.
        result += [
            {"ParameterKey": k, "UsePreviousValue": True}
            for k in declared
            if previous.get(k) and k not in values
        ]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    for k, v in values.items():
        if mode == "UPDATE" and k in previous:
            note = "unchanged" if previous[k] == v else f"was {previous[k]}"
            print(f"      {k} = {v}  ({note})")
        else:
            print(f"      {k} = {v}")


def unchanged(template, current_json, stack_json, *given):
    """Exit 0 when the stack already runs this template with these parameter values."""
    body = load(current_json).get("TemplateBody")
    body = json.loads(body) if isinstance(body, str) else body
    previous = {
        p["ParameterKey"]: p.get("ParameterValue")
        for p in load(stack_json)["Stacks"][0].get("Parameters") or []
    }
    values = dict(kv.split("=", 1) for kv in given)
    same = body == load(template) and all(previous.get(k) == v for k, v in values.items())
    sys.exit(0 if same else 1)


def changes(change_set):
    """Print the change set's resource changes; write their logical ids for progress."""
    cs = load(change_set)
    rows = [c["ResourceChange"] for c in cs.get("Changes") or [] if "ResourceChange" in c]
    with open(change_set + ".ids", "w", encoding="utf-8") as f:
        f.writelines(r["LogicalResourceId"] + "\n" for r in rows)
    width = max([len(r["LogicalResourceId"]) for r in rows] + [10])
    for r in rows:
        replace = r.get("Replacement")
        note = f"replacement: {replace}" if r["Action"] == "Modify" and replace else ""
        print(
            f"      {r['Action']:<7} {r['LogicalResourceId']:<{width}}  "
            f"{r['ResourceType']:<30} {note}".rstrip()
        )


def events(events_json, state_path, ids_path, baseline, stack_id):
    """Print events newer than baseline not yet shown, oldest first, with progress."""
    try:
        state = load(state_path)
    except FileNotFoundError:
        state = {"seen": [], "done": [], "failed": [], "resource_events": 0, "stack": ""}
    with open(ids_path, encoding="utf-8") as f:
        ids = [line.strip() for line in f if line.strip()]
    since = when(baseline)
    seen = set(state["seen"])
    done = set(state["done"])
    for e in reversed(load(events_json)["StackEvents"]):
        if e["EventId"] in seen or when(e["Timestamp"]) <= since:
            continue
        seen.add(e["EventId"])
        status, reason = e["ResourceStatus"], e.get("ResourceStatusReason") or ""
        logical = e["LogicalResourceId"]
        clock = when(e["Timestamp"]).strftime("%H:%M:%S")
        if e["ResourceType"] == "AWS::CloudFormation::Stack" and e["PhysicalResourceId"] == stack_id:
            state["stack"] = status
            print(f"      {clock}  {'':7}  {logical:<28} {status:<24} {reason}".rstrip())
            continue
        state["resource_events"] += 1
        if status.endswith("_FAILED"):
            state["failed"].append([logical, status, reason])
        elif status.endswith("_COMPLETE") or status == "DELETE_SKIPPED":
            if "ROLLBACK" not in status and logical in ids:
                done.add(logical)
        progress = f"[{len(done)}/{len(ids)}]"
        print(f"      {clock}  {progress:>7}  {logical:<28} {status:<24} {reason}".rstrip())
    state["seen"], state["done"] = sorted(seen), sorted(done)
    with open(state_path, "w", encoding="utf-8") as f:
        json.dump(state, f)
    with open(state_path + ".stack", "w", encoding="utf-8") as f:
        f.write(state["stack"])


def summary(state_path, ids_path):
    """One line: how many resource changes the events reported complete."""
    state = load(state_path)
    with open(ids_path, encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    if state["resource_events"]:
        print(f"{len(state['done'])}/{total} resource changes reported complete")
    else:
        print("the endpoint reported no per-resource events")


def failures(state_path):
    for logical, status, reason in load(state_path)["failed"]:
        print(f"      {logical}  {status}  {reason}")


def outputs(stack_json, resources_json, url_out):
    """Print the stack's Outputs; without any, values derived from its resources, labelled."""
    stack = load(stack_json)["Stacks"][0]
    found = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
    url = found.get("ApiUrl", "")
    if found:
        width = max(len(k) for k in found)
        for key, value in found.items():
            print(f"      {key:<{width}}  {value}")
    else:
        print("      The stack reports no Outputs (moto never does for change-set stacks);")
        print("      derived from its resources instead:")
        res = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId")
            for r in load(resources_json)["StackResources"]
            if r.get("LogicalResourceId")
        }
        region, partition = stack["StackId"].split(":")[3], stack["StackId"].split(":")[1]
        suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
        stage = res.get("ApiStage") or params.get("StageName")
        if res.get("CounterApi") and stage:
            url = f"https://{res['CounterApi']}.execute-api.{region}.{suffix}/{stage}/"
        derived = {
            "ApiUrl": url or "(unknown: no RestApi or stage in the stack's resources)",
            "TableName": res.get("CounterTable") or "(unknown)",
            "CounterFunctionName": res.get("CounterFunction") or "(unknown)",
        }
        for key, value in derived.items():
            print(f"      {key:<19}  {value}")
    with open(url_out, "w", encoding="utf-8") as f:
        f.write(url)


def count(body_path):
    """The count of a counter response body, or exit 1."""
    try:
        print(int(load(body_path)["count"]))
    except (ValueError, KeyError, TypeError):
        sys.exit(1)


command, *args = sys.argv[1:]
globals()[command](*args)
PY
}

# --- AWS CLI ------------------------------------------------------------------------------

AWS_ARGS=(--output json)
[[ -z $PROFILE ]] || AWS_ARGS+=(--profile "$PROFILE")

aws_cli() { "$AWS" "${AWS_ARGS[@]}" "$@"; }

last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1 || true; }

aws_or_die() { # aws_or_die WHAT ARGS...: the CLI's JSON on stdout, or one error line and exit 1
	local what=$1
	shift
	aws_cli "$@" 2>"$TMP/err" || die "$what: $(last_line "$TMP/err")"
}

# The one-line reminder of where this runs, e.g. "--region eu-west-1 --profile prod".
where_args() {
	local out="--stack-name $STACK"
	[[ -z $REGION_GIVEN ]] || out+=" --region $REGION"
	[[ -z $PROFILE ]] || out+=" --profile $PROFILE"
	printf '%s' "$out"
}

check_aws() {
	REGION_GIVEN=$REGION
	if [[ -z $REGION ]]; then
		REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws_cli configure get region 2>/dev/null || true)}}
	fi
	[[ -n $REGION ]] ||
		die "no AWS region: pass --region, set AWS_DEFAULT_REGION, or configure one with 'aws configure'"
	AWS_ARGS+=(--region "$REGION")
	if ! aws_cli sts get-caller-identity >"$TMP/identity.json" 2>"$TMP/err"; then
		if grep -q "Unable to locate credentials" "$TMP/err"; then
			die "no AWS credentials found: run 'aws configure', set AWS_PROFILE (or --profile)," \
				"or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
		fi
		die "AWS credentials check (aws sts get-caller-identity) failed: $(last_line "$TMP/err")"
	fi
	ACCOUNT=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["Account"])' \
		"$TMP/identity.json")
}

# describe-stacks into $TMP/stack.json; STACK_STATUS and STACK_ID, both empty if no stack.
read_stack() {
	STACK_STATUS="" STACK_ID=""
	if aws_cli cloudformation describe-stacks --stack-name "${1:-$STACK}" \
		>"$TMP/stack.json" 2>"$TMP/err"; then
		read -r STACK_STATUS STACK_ID < <("$PY" -c \
			'import json,sys; s=json.load(open(sys.argv[1]))["Stacks"][0]; print(s["StackStatus"], s["StackId"])' \
			"$TMP/stack.json")
	elif ! grep -q "does not exist" "$TMP/err"; then
		die "describe-stacks: $(last_line "$TMP/err")"
	fi
}

# Poll the stack's events, printing new ones, until the stack reaches a terminal status.
watch_stack() { # watch_stack STACK_ID BASELINE_TIME IDS_FILE; sets STACK_STATUS
	local stack_id=$1 baseline=$2 ids=$3 polls=0 last
	rm -f "$TMP/state.json"
	trap 'echo >&2; die 130 "stopped watching; CloudFormation carries on with stack $STACK (see its events in the console or with aws cloudformation describe-stack-events)"' INT
	while :; do
		aws_or_die "describe-stack-events" cloudformation describe-stack-events --no-paginate \
			--stack-name "$stack_id" >"$TMP/events.json"
		pyhelp events "$TMP/events.json" "$TMP/state.json" "$ids" "$baseline" "$stack_id"
		last=$(<"$TMP/state.json.stack")
		polls=$((polls + 1))
		if [[ -n $last && $last != *_IN_PROGRESS ]] || ((polls % 10 == 0)); then
			read_stack "$stack_id"
			if [[ $STACK_STATUS != *_IN_PROGRESS ]]; then
				trap - INT
				return 0
			fi
		fi
		sleep "$POLL_SECONDS"
	done
}

report_failure() { # after a failed operation: the failing resources and their reasons
	local reason
	if [[ -n $(pyhelp failures "$TMP/state.json") ]]; then
		echo "    Failed resources:"
		pyhelp failures "$TMP/state.json"
	fi
	reason=$("$PY" -c \
		'import json,sys; print(json.load(open(sys.argv[1]))["Stacks"][0].get("StackStatusReason") or "")' \
		"$TMP/stack.json")
	[[ -z $reason ]] || echo "    Stack status reason: $reason"
}

explain_rollback_complete() {
	echo "Stack $STACK is in ROLLBACK_COMPLETE: its creation failed and was rolled back." >&2
	echo "CloudFormation cannot update such a stack; delete it, then deploy again:" >&2
	echo "    $PROG --delete $(where_args)" >&2
}

# --- delete -------------------------------------------------------------------------------

do_delete() {
	local table="" answer baseline
	read_stack
	[[ -n $STACK_ID ]] || die "stack $STACK does not exist in $REGION: nothing to delete"
	aws_or_die "describe-stack-resources" cloudformation describe-stack-resources \
		--stack-name "$STACK_ID" >"$TMP/resources.json"
	table=$("$PY" -c '
import json, sys
for r in json.load(open(sys.argv[1]))["StackResources"]:
    if r.get("LogicalResourceId") == sys.argv[2] and r.get("ResourceStatus") != "DELETE_COMPLETE":
        print(r.get("PhysicalResourceId") or "")' "$TMP/resources.json" "$TABLE_ID")
	if ((!YES)); then
		printf 'Delete stack %s (%s) in %s, account %s? The table is kept. [y/N] ' \
			"$STACK" "$STACK_STATUS" "$REGION" "$ACCOUNT"
		read -r answer || answer=""
		[[ $answer == [yY] || $answer == [yY][eE][sS] ]] || die "cancelled: stack $STACK was not deleted"
	fi
	aws_or_die "describe-stack-events" cloudformation describe-stack-events --no-paginate \
		--stack-name "$STACK_ID" >"$TMP/events.json"
	baseline=$("$PY" -c \
		'import json,sys; e=json.load(open(sys.argv[1]))["StackEvents"]; print(e[0]["Timestamp"] if e else "1970-01-01T00:00:00Z")' \
		"$TMP/events.json")
	"$PY" -c '
import json, sys
for r in json.load(open(sys.argv[1]))["StackResources"]:
    if r.get("LogicalResourceId"):
        print(r["LogicalResourceId"])' "$TMP/resources.json" >"$TMP/delete.ids"
	step "Deleting stack $STACK ($REGION); events:"
	aws_or_die "delete-stack" cloudformation delete-stack --stack-name "$STACK_ID"
	watch_stack "$STACK_ID" "$baseline" "$TMP/delete.ids"
	if [[ $STACK_STATUS != DELETE_COMPLETE ]]; then
		echo "Stack $STACK: $STACK_STATUS" >&2
		report_failure >&2
		die "deleting stack $STACK failed"
	fi
	step "Stack $STACK deleted ($(pyhelp summary "$TMP/state.json" "$TMP/delete.ids"))."
	local extra=""
	[[ -z $REGION_GIVEN ]] || extra+=" --region $REGION"
	[[ -z $PROFILE ]] || extra+=" --profile $PROFILE"
	if [[ -n $table ]]; then
		echo "The counter table $table was kept, with every count in it"
		echo "(DeletionPolicy Retain, deletion protection on). To delete it for good:"
		echo "    aws dynamodb update-table --table-name $table --no-deletion-protection-enabled$extra"
		echo "    aws dynamodb delete-table --table-name $table$extra"
	else
		echo "The stack listed no physical id for $TABLE_ID. If the table was ever created, it"
		echo "was kept (DeletionPolicy Retain): look for it with 'aws dynamodb list-tables$extra'."
	fi
}

# --- deploy -------------------------------------------------------------------------------

STACK_POLICY='{"Statement": [
 {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
 {"Effect": "Deny", "Principal": "*", "Action": ["Update:Replace", "Update:Delete"],
  "Resource": "LogicalResourceId/'$TABLE_ID'"}]}'

change_set_field() { # change_set_field FIELD: from $TMP/changeset.json
	"$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' \
		"$TMP/changeset.json" "$1"
}

discard_change_set() { # delete the change set, and the empty stack a CREATE one made
	aws_cli cloudformation delete-change-set --stack-name "$STACK_ID" \
		--change-set-name "$CHANGE_SET" >/dev/null 2>&1 || true
	if [[ $TYPE == CREATE ]]; then
		aws_cli cloudformation delete-stack --stack-name "$STACK_ID" >/dev/null 2>&1 || true
	fi
}

smoke_test() { # smoke_test URL: two requests to a fresh path must count 1, then 2
	local url=$1 path first second code tries=0
	command -v curl >/dev/null 2>&1 || die "smoke test: curl not found (install it, or pass --no-smoke)"
	path="smoke-test-$(date +%s)-$RANDOM$RANDOM"
	step "Smoke test: two requests to ${url}${path}"
	# A new API can take a few seconds to resolve in DNS and route: retry only failures
	# in which no request reached the counter (no connection, or 403/404 from the gateway).
	while :; do
		code=$(curl -sS -o "$TMP/body1" -w '%{http_code}' --max-time 20 "${url}${path}" \
			2>"$TMP/err") || code=000
		if [[ $code != 000 && $code != 403 && $code != 404 ]] || ((++tries >= 15)); then break; fi
		sleep 2
	done
	[[ $code == 200 ]] ||
		die "smoke test failed: HTTP $code from ${url}${path}: $(head -c 300 "$TMP/body1" 2>/dev/null)$(last_line "$TMP/err")"
	code=$(curl -sS -o "$TMP/body2" -w '%{http_code}' --max-time 20 "${url}${path}" \
		2>"$TMP/err") || code=000
	[[ $code == 200 ]] || die "smoke test failed: second request answered HTTP $code"
	first=$(pyhelp count "$TMP/body1") || die "smoke test failed: not a counter response: $(head -c 300 "$TMP/body1")"
	second=$(pyhelp count "$TMP/body2") || die "smoke test failed: not a counter response: $(head -c 300 "$TMP/body2")"
	[[ $first == 1 && $second == 2 ]] ||
		die "smoke test failed: expected counts 1 then 2, got $first then $second"
	echo "    OK: /$path counted 1, then 2."
}

# TEMPLATE_ARGS for create-change-set: the template inline, or uploaded to --s3-bucket.
# CloudFormation takes at most 51,200 bytes inline; from S3, up to 1 MB.
template_source() {
	local size key
	size=$(wc -c <"$1")
	if [[ -n $S3_BUCKET ]]; then
		# Named by content: an unchanged template is not uploaded as a new object.
		key="route-counter/$STACK/$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1").json"
		# --expected-bucket-owner: never hand the template to a bucket of another account.
		aws_or_die "uploading the template to s3://$S3_BUCKET" s3api put-object \
			--bucket "$S3_BUCKET" --key "$key" --body "$1" --expected-bucket-owner "$ACCOUNT" >/dev/null
		step "Template uploaded to s3://$S3_BUCKET/$key"
		TEMPLATE_ARGS=(--template-url "https://$S3_BUCKET.s3.$REGION.amazonaws.com/$key")
	elif ((size > 51200)); then
		die "the template is $((size)) bytes, over the 51,200 CloudFormation takes inline:" \
			"pass --s3-bucket BUCKET (a bucket of yours in $REGION) to deploy it from S3"
	else
		TEMPLATE_ARGS=(--template-body "file://$1")
	fi
}

do_deploy() {
	local template=$TMP/route-counter.template.json lint status reason
	(cd "$ROOT" && "$PY" generate.py >"$template") || die "generate.py failed (see above)"
	pyhelp check_params "$template" ${PARAMS[@]+"${PARAMS[@]}"} || exit 2
	lint=$(tool cfn-lint)
	[[ -n $lint ]] || die "cfn-lint not found: run 'make venv'"
	# Lint in the background while the AWS checks run; nothing is deployed before it passes.
	"$lint" "$template" --include-checks I >"$TMP/lint.txt" 2>&1 &
	LINT_PID=$!

	check_aws
	read_stack

	if ! wait "$LINT_PID"; then
		LINT_PID=""
		sed "s|$template|template.json|" "$TMP/lint.txt" >&2
		die "cfn-lint found problems in the generated template: nothing was deployed"
	fi
	LINT_PID=""
	step "Template generated (python generate.py) and linted (cfn-lint): OK"

	case $STACK_STATUS in
	"" | REVIEW_IN_PROGRESS) TYPE=CREATE ;;
	ROLLBACK_COMPLETE)
		explain_rollback_complete
		exit 1
		;;
	*_IN_PROGRESS) die "stack $STACK is busy ($STACK_STATUS): wait for it to finish, then retry" ;;
	*) TYPE=UPDATE ;;
	esac
	if [[ $TYPE == CREATE ]]; then
		step "Stack $STACK does not exist in $REGION (account $ACCOUNT): creating it"
	else
		step "Stack $STACK in $REGION (account $ACCOUNT) is $STACK_STATUS: updating it"
	fi
	if ((${#PARAMS[@]})); then
		echo "    Parameters:"
	fi
	pyhelp params "$template" "$TYPE" "$TMP/stack.json" "$TMP/params.json" ${PARAMS[@]+"${PARAMS[@]}"}
	if ((${#PARAMS[@]} == 0)); then
		if [[ $TYPE == CREATE ]]; then
			echo "    Parameters: template defaults"
		else
			echo "    Parameters: current values kept"
		fi
	fi

	# The same template with the same values: nothing to do, and no change set to make.
	if [[ $TYPE == UPDATE ]] &&
		aws_cli cloudformation get-template --stack-name "$STACK_ID" \
			--template-stage Original >"$TMP/current.json" 2>/dev/null &&
		pyhelp unchanged "$template" "$TMP/current.json" "$TMP/stack.json" \
			${PARAMS[@]+"${PARAMS[@]}"}; then
		no_changes
		return
	fi

	# Change set: create, wait, review.
	template_source "$template"
	CHANGE_SET="deploy-$(date -u +%Y%m%d-%H%M%S)"
	if ! aws_cli cloudformation create-change-set --stack-name "$STACK" \
		--change-set-name "$CHANGE_SET" --change-set-type "$TYPE" \
		"${TEMPLATE_ARGS[@]}" --parameters "file://$TMP/params.json" \
		--capabilities CAPABILITY_IAM --description "$PROG" >"$TMP/created.json" 2>"$TMP/err"; then
		# Some endpoints (moto) refuse an empty update outright instead of failing the change set.
		if grep -q "No updates are to be performed" "$TMP/err"; then
			no_changes
			return
		fi
		die "create-change-set: $(last_line "$TMP/err")"
	fi
	STACK_ID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["StackId"])' \
		"$TMP/created.json")
	while :; do
		aws_or_die "describe-change-set" cloudformation describe-change-set --stack-name "$STACK_ID" \
			--change-set-name "$CHANGE_SET" >"$TMP/changeset.json"
		status=$(change_set_field Status)
		[[ $status == CREATE_PENDING || $status == CREATE_IN_PROGRESS ]] || break
		sleep "$POLL_SECONDS"
	done
	if [[ $status == FAILED ]]; then
		reason=$(change_set_field StatusReason)
		if [[ $reason == *"didn't contain changes"* || $reason == *"No updates are to be performed"* ]]; then
			discard_change_set
			no_changes
			return
		fi
		discard_change_set
		die "change set failed: $reason"
	fi
	if [[ -n $(pyhelp changes "$TMP/changeset.json") ]]; then
		step "Change set $CHANGE_SET:"
		pyhelp changes "$TMP/changeset.json"
	else
		step "Change set $CHANGE_SET: no resource changes listed (parameters or outputs only)"
	fi

	if ((DRY_RUN)); then
		discard_change_set
		if [[ $TYPE == CREATE ]]; then
			step "Dry run: change set and the empty REVIEW_IN_PROGRESS stack deleted; nothing deployed."
		else
			step "Dry run: change set deleted; stack $STACK unchanged."
		fi
		return
	fi

	# Execute and follow.
	step "Executing the change set; stack events:"
	aws_or_die "execute-change-set" cloudformation execute-change-set --stack-name "$STACK_ID" \
		--change-set-name "$CHANGE_SET"
	watch_stack "$STACK_ID" "$(change_set_field CreationTime)" "$TMP/changeset.json.ids"
	case $STACK_STATUS in
	CREATE_COMPLETE | UPDATE_COMPLETE) ;;
	*)
		{
			echo "Stack $STACK: $STACK_STATUS"
			report_failure
		} >&2
		if [[ $STACK_STATUS == ROLLBACK_COMPLETE ]]; then
			explain_rollback_complete
		elif [[ $STACK_STATUS == UPDATE_ROLLBACK_COMPLETE ]]; then
			echo "The update was rolled back: the stack runs its previous version." >&2
		fi
		die "deploying stack $STACK failed"
		;;
	esac
	step "Stack $STACK is $STACK_STATUS ($(pyhelp summary "$TMP/state.json" "$TMP/changeset.json.ids"))"
	finish
}

no_changes() {
	if ((DRY_RUN)); then
		step "No changes: stack $STACK already matches the template and parameters."
		return
	fi
	step "No changes: stack $STACK ($STACK_STATUS) already matches the template and parameters."
	finish
}

finish() { # after a deploy (or a no-change one): stack policy, outputs, smoke test
	aws_or_die "set-stack-policy" cloudformation set-stack-policy --stack-name "$STACK_ID" \
		--stack-policy-body "$STACK_POLICY"
	step "Stack policy set: no stack update may replace or delete $TABLE_ID."
	# $TMP/stack.json is current: read after the deploy finished (or found nothing to change).
	if ! "$PY" -c 'import json,sys; sys.exit(not json.load(open(sys.argv[1]))["Stacks"][0].get("Outputs"))' \
		"$TMP/stack.json"; then
		aws_or_die "describe-stack-resources" cloudformation describe-stack-resources \
			--stack-name "$STACK_ID" >"$TMP/resources.json"
	fi
	step "Outputs:"
	pyhelp outputs "$TMP/stack.json" "$TMP/resources.json" "$TMP/url"
	local url
	url=$(<"$TMP/url")
	if ((!SMOKE)); then
		step "Smoke test skipped (--no-smoke)."
	elif [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
		step "Smoke test skipped: AWS_ENDPOINT_URL is set ($AWS_ENDPOINT_URL), an emulator serves no real API."
	elif [[ -z $url ]]; then
		die "smoke test: no ApiUrl to test (pass --no-smoke to skip it)"
	else
		smoke_test "$url"
	fi
}

# --- main -----------------------------------------------------------------------------------

if ((DELETE)); then
	check_aws
	do_delete
else
	do_deploy
fi
