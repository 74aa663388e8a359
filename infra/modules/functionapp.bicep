// The control plane: a Python 3.11 Function App on the Flex Consumption plan (FC1, Linux).
// Flex scales to zero like Consumption, runs the timer trigger, deploys from a blob container
// with the app's managed identity, and needs no storage key anywhere.

param location string
param tags object
param name string
param planName string

@description('Storage account for the Functions host (AzureWebJobsStorage) and the deployment package.')
param storageAccountName string

@description('Blob container holding the deployment package that azd uploads.')
param deploymentContainerName string

param appInsightsConnectionString string

@description('The application\'s own settings (AZTRAIN_*), merged over the host settings.')
param appSettings object

// Flex Consumption's bounds (learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
// Considerations: "The lowest maximum scale ... is 40. The highest currently supported value is
// 1000"; Instance memory: 2,048 MB, the default, or 4,096 MB).
@minValue(40)
@maxValue(1000)
@description('Upper bound on Flex instances. Every handler is idempotent, so any value is safe; it caps cost.')
param maximumInstanceCount int = 40

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 512

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions, and nothing is lost without it: Event Grid retries a delivery for 24 hours and the reconciler resumes every run from Table Storage, so a zone outage delays runs instead of dropping them.
}

// Flex rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION: the runtime lives in
// functionAppConfig.runtime. Identity-based host storage: no connection string.
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD' // system-assigned identity
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the site to deploy service `api` (azure.yaml) by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled' // no FTP/FTPS deployment; azd deploys the package with Entra ID
      http20Enabled: true // HTTP/2 offered; HTTP/1.1 callers (Event Grid, curl) still negotiate 1.1
      appSettings: [for setting in items(union(appSettings, hostSettings)): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  // checkov:skip=CKV_AZURE_222: Event Grid pushes events to the function over its public endpoint (it cannot deliver to a function behind a private endpoint) and the CLI calls the HTTP API from anywhere; every call needs a function or system key over HTTPS (TLS 1.2+). Private networking is not part of this template (docs/deploy.md, Known limits).
  // checkov:skip=CKV_AZURE_17: Required client certificates (mutual TLS) would turn away Event Grid deliveries and the CLI, which authenticate with function keys; an optional certificate would only satisfy the scan.
  // checkov:skip=CKV_AZURE_212: A minimum instance count means always-ready instances billed while idle; the plan scales to zero on purpose, and a cold start only delays an idempotent handler that Event Grid retries anyway.
  // checkov:skip=CKV_AZURE_213: App Service health check pings a path on every instance without a key, but /api/health takes a function key (the app's auth level is FUNCTION), so the ping would get 401 and mark healthy instances bad; Flex instances come and go with load, and failures show in Application Insights. Call /api/health with a key (docs/deploy.md, Check it).
}

// No publishing passwords: azd deploys with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
