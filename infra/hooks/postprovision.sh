#!/bin/sh
# azd postprovision hook (azure.yaml, posix): register the trainer's Azure ML environment once.
#
# A run's job names its environment (AZTRAIN_AML_ENVIRONMENT, `<name>@latest`); without it the first
# run fails. The environment is built by Azure ML from trainer/environment (its Dockerfile) on first
# use: registering only uploads the build context, so this hook is quick. Safe to run again: an
# environment already registered is left alone. infra/hooks/postprovision.ps1 is the same for Windows.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
context="$here/../../trainer/environment"

hook=postprovision
# shellcheck source=infra/hooks/common.sh
. "$here/common.sh"
require_tools

subscription=$(env_value AZURE_SUBSCRIPTION_ID)
resource_group=$(env_value AZURE_RESOURCE_GROUP)
workspace=$(env_value AZURE_ML_WORKSPACE_NAME)
environment=$(env_value AZURE_ML_ENVIRONMENT_NAME)
if [ -z "$subscription" ] || [ -z "$resource_group" ] || [ -z "$workspace" ] || [ -z "$environment" ]; then
  echo "postprovision: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_ML_WORKSPACE_NAME or" \
    "AZURE_ML_ENVIRONMENT_NAME is not set; run 'azd provision' (or 'azd up') first" >&2
  exit 1
fi
if ! az extension show --name ml --output none >/dev/null 2>&1; then
  echo "postprovision: the Azure CLI 'ml' extension is missing: 'az extension add --name ml'," \
    "then 'sh infra/hooks/postprovision.sh'" >&2
  exit 1
fi

where="--subscription $subscription --resource-group $resource_group --workspace-name $workspace"
# shellcheck disable=SC2086 # $where is our own flags, split on purpose
if az ml environment show $where --name "$environment" --label latest --query name --output tsv >/dev/null 2>&1; then
  echo "postprovision: Azure ML environment $environment is registered"
  exit 0
fi
echo "postprovision: registering Azure ML environment $environment from trainer/environment;" \
  "Azure ML builds its image on the first run (about 40 minutes, once: docs/deploy.md, What it costs)"
# shellcheck disable=SC2086
if ! az ml environment create $where --name "$environment" --build-context "$context" \
  --dockerfile-path Dockerfile --output none; then
  echo "postprovision: could not register $environment; fix the cause above and run" \
    "'sh infra/hooks/postprovision.sh' again (runs fail until it is registered)" >&2
  exit 1
fi
echo "postprovision: Azure ML environment $environment registered"
