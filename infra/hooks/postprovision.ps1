# azd postprovision hook (azure.yaml, windows): register the trainer's Azure ML environment once.
# The same steps as infra/hooks/postprovision.sh; see there for why.
$ErrorActionPreference = 'Stop'

$context = Join-Path $PSScriptRoot '..' '..' 'trainer' 'environment'

function Stop-Hook([string] $message) {
    Write-Error "postprovision: $message"
    exit 1
}

foreach ($tool in 'az', 'azd') {
    if (-not (Get-Command $tool -ErrorAction SilentlyContinue)) {
        Stop-Hook "'$tool' is not installed; see Prerequisites in docs/deploy.md"
    }
}

function Get-EnvValue([string] $name) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if (-not $value) { $value = (azd env get-value $name 2>$null) }
    return $value
}

$subscription = Get-EnvValue 'AZURE_SUBSCRIPTION_ID'
$resourceGroup = Get-EnvValue 'AZURE_RESOURCE_GROUP'
$workspace = Get-EnvValue 'AZURE_ML_WORKSPACE_NAME'
$environment = Get-EnvValue 'AZURE_ML_ENVIRONMENT_NAME'
if (-not $subscription -or -not $resourceGroup -or -not $workspace -or -not $environment) {
    Stop-Hook "AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_ML_WORKSPACE_NAME or AZURE_ML_ENVIRONMENT_NAME is not set; run 'azd provision' (or 'azd up') first"
}
az extension show --name ml --output none *> $null
if ($LASTEXITCODE -ne 0) {
    Stop-Hook "the Azure CLI 'ml' extension is missing: 'az extension add --name ml', then 'pwsh infra/hooks/postprovision.ps1'"
}

az ml environment show --subscription $subscription --resource-group $resourceGroup --workspace-name $workspace --name $environment --label latest --query name --output tsv *> $null
if ($LASTEXITCODE -eq 0) {
    Write-Host "postprovision: Azure ML environment $environment is registered"
    exit 0
}
Write-Host "postprovision: registering Azure ML environment $environment from trainer/environment; Azure ML builds its image on the first run (about 40 minutes, once: docs/deploy.md, What it costs)"
az ml environment create --subscription $subscription --resource-group $resourceGroup --workspace-name $workspace --name $environment --build-context $context --dockerfile-path Dockerfile --output none
if ($LASTEXITCODE -ne 0) {
    Stop-Hook "could not register $environment; fix the cause above and run 'pwsh infra/hooks/postprovision.ps1' again (runs fail until it is registered)"
}
Write-Host "postprovision: Azure ML environment $environment registered"
