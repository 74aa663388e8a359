#!/bin/sh
# azd postdeploy hook (azure.yaml, posix): subscribe the deployed functions to Event Grid.
#
# Event Grid checks that an AzureFunction destination exists when a subscription is created, and
# the functions exist only once `azd deploy` has published the code, so infra/events.bicep cannot
# be part of `azd provision`. This hook waits until the Function App lists the destination
# functions, then deploys infra/events.bicep with the parameters main.bicep left in the azd
# environment (AZTRAIN_EVENTS_PARAMETERS). The pattern follows Azure's Flex Consumption Event Grid
# quickstart (github.com/Azure-Samples/functions-quickstart-python-azd-eventgrid-blob,
# scripts/post-up.sh). Safe to run again by hand: `sh infra/hooks/postdeploy.sh`.
# infra/hooks/postdeploy.ps1 is the same for Windows.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
template="$here/../events.bicep"
# The functions infra/events.bicep delivers to (tests/unit/test_infra.py keeps the lists equal).
functions="on_run_status_changed"
wait_seconds=${AZTRAIN_HOOK_WAIT_SECONDS:-600}
poll_seconds=${AZTRAIN_HOOK_POLL_SECONDS:-15}

hook=postdeploy
# shellcheck source=infra/hooks/common.sh
. "$here/common.sh"
require_tools

# az and azd keep separate sign-ins, possibly to different subscriptions: name azd's on every az call.
subscription=$(env_value AZURE_SUBSCRIPTION_ID)
if [ -z "$subscription" ]; then
  echo "postdeploy: AZURE_SUBSCRIPTION_ID is not set; run 'azd provision' (or 'azd up') first" >&2
  exit 1
fi
resource_group=$(env_value AZURE_RESOURCE_GROUP)
app=$(env_value AZURE_FUNCTION_APP_NAME)
parameters=$(env_value AZTRAIN_EVENTS_PARAMETERS)
if [ -z "$resource_group" ] || [ -z "$app" ] || [ -z "$parameters" ]; then
  echo "postdeploy: AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME or AZTRAIN_EVENTS_PARAMETERS is not set;" \
    "run 'azd provision' (or 'azd up') first" >&2
  exit 1
fi

# The host indexes the functions when it starts from the new package, shortly after the deploy.
deadline=$(($(date +%s) + wait_seconds))
for fn in $functions; do
  until az functionapp function show --subscription "$subscription" --resource-group "$resource_group" --name "$app" \
    --function-name "$fn" --query name --output tsv >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "postdeploy: $app does not list function $fn after ${wait_seconds}s; check the output of" \
        "'azd deploy' and the app's logs, then run 'sh infra/hooks/postdeploy.sh' again" >&2
      exit 1
    fi
    echo "postdeploy: waiting for $app to list $fn ..."
    sleep "$poll_seconds"
  done
done

params_file=$(mktemp "${TMPDIR:-/tmp}/aztrain-events.XXXXXX")
trap 'rm -f "$params_file"' EXIT
printf '%s\n' "$parameters" >"$params_file"

# Event Grid can take a little longer than the function listing to accept the new destination.
attempt=1
until az deployment group create --subscription "$subscription" --resource-group "$resource_group" --name aztrain-events \
  --template-file "$template" --parameters "@$params_file" --output none; do
  if [ "$attempt" -ge 3 ]; then
    echo "postdeploy: could not create the Event Grid subscriptions; run 'sh infra/hooks/postdeploy.sh'" \
      "again once the cause above is fixed" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  echo "postdeploy: retrying in $((poll_seconds * 2))s (attempt $attempt of 3) ..."
  sleep $((poll_seconds * 2))
done
echo "postdeploy: Event Grid subscriptions to $app are in place: uploads now create runs"
