// Log Analytics + workspace-based Application Insights for the Function App.
// Local (instrumentation-key) ingestion is disabled: the app sends telemetry with its
// managed identity (Monitoring Metrics Publisher, granted in rbac.bicep).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = logAnalytics.id
output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
// Not a secret: it names the ingestion endpoint, and with local auth disabled it cannot ingest without Entra ID.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
