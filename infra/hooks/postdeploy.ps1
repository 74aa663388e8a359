#!/usr/bin/env pwsh
# azd postdeploy hook (azure.yaml, windows): subscribe the deployed functions to Event Grid.
#
# The same steps as infra/hooks/postdeploy.sh: Event Grid checks that an AzureFunction destination
# exists when a subscription is created, and the functions exist only once `azd deploy` has
# published the code. So wait until the Function App lists the destination functions, then deploy
# infra/events.bicep with the parameters main.bicep left in the azd environment
# (AZTRAIN_EVENTS_PARAMETERS). Pattern: Azure's Flex Consumption Event Grid quickstart
# (github.com/Azure-Samples/functions-quickstart-python-azd-eventgrid-blob, scripts/post-up.ps1).
# Safe to run again by hand: `pwsh infra/hooks/postdeploy.ps1`.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$template = Join-Path $PSScriptRoot '..' 'events.bicep'
# The functions infra/events.bicep delivers to (tests/unit/test_infra.py keeps the lists equal).
$functions = @('on_run_status_changed')
$waitSeconds = if ($env:AZTRAIN_HOOK_WAIT_SECONDS) { [int]$env:AZTRAIN_HOOK_WAIT_SECONDS } else { 600 }
$pollSeconds = if ($env:AZTRAIN_HOOK_POLL_SECONDS) { [int]$env:AZTRAIN_HOOK_POLL_SECONDS } else { 15 }

function Stop-Hook([string]$Message) {
    [Console]::Error.WriteLine("postdeploy: $Message")
    exit 1
}

foreach ($tool in @('az', 'azd')) {
    if (-not (Get-Command $tool -ErrorAction SilentlyContinue)) {
        Stop-Hook "'$tool' is not installed; see Prerequisites in docs/deploy.md"
    }
}

# azd exports the environment's values to its hooks; `azd env get-value` covers a manual run.
function Get-EnvValue([string]$Name) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if (-not $value) {
        $value = (& azd env get-value $Name 2>$null) -join "`n"
        if ($LASTEXITCODE -ne 0) { $value = '' }
    }
    return $value
}

# az and azd keep separate sign-ins, possibly to different subscriptions: name azd's on every az call.
$subscription = Get-EnvValue 'AZURE_SUBSCRIPTION_ID'
if (-not $subscription) {
    Stop-Hook "AZURE_SUBSCRIPTION_ID is not set; run 'azd provision' (or 'azd up') first"
}
$resourceGroup = Get-EnvValue 'AZURE_RESOURCE_GROUP'
$app = Get-EnvValue 'AZURE_FUNCTION_APP_NAME'
$parameters = Get-EnvValue 'AZTRAIN_EVENTS_PARAMETERS'
if (-not $resourceGroup -or -not $app -or -not $parameters) {
    Stop-Hook "AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME or AZTRAIN_EVENTS_PARAMETERS is not set; run 'azd provision' (or 'azd up') first"
}

# The host indexes the functions when it starts from the new package, shortly after the deploy.
$deadline = (Get-Date).AddSeconds($waitSeconds)
foreach ($fn in $functions) {
    while ($true) {
        az functionapp function show --subscription $subscription --resource-group $resourceGroup --name $app --function-name $fn --query name --output tsv *> $null
        if ($LASTEXITCODE -eq 0) { break }
        if ((Get-Date) -ge $deadline) {
            Stop-Hook "$app does not list function $fn after ${waitSeconds}s; check the output of 'azd deploy' and the app's logs, then run 'pwsh infra/hooks/postdeploy.ps1' again"
        }
        Write-Host "postdeploy: waiting for $app to list $fn ..."
        Start-Sleep -Seconds $pollSeconds
    }
}

$paramsFile = New-TemporaryFile
try {
    Set-Content -Path $paramsFile -Value $parameters -Encoding utf8NoBOM
    # Event Grid can take a little longer than the function listing to accept the new destination.
    for ($attempt = 1; ; $attempt++) {
        az deployment group create --subscription $subscription --resource-group $resourceGroup --name aztrain-events `
            --template-file $template --parameters "@$($paramsFile.FullName)" --output none
        if ($LASTEXITCODE -eq 0) { break }
        if ($attempt -ge 3) {
            Stop-Hook "could not create the Event Grid subscriptions; run 'pwsh infra/hooks/postdeploy.ps1' again once the cause above is fixed"
        }
        Write-Host "postdeploy: retrying in $(2 * $pollSeconds)s (attempt $($attempt + 1) of 3) ..."
        Start-Sleep -Seconds (2 * $pollSeconds)
    }
}
finally {
    Remove-Item -Path $paramsFile -ErrorAction SilentlyContinue
}
Write-Host "postdeploy: Event Grid subscriptions to $app are in place: uploads now create runs"
