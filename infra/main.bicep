// aztrain on Azure: storage (blobs + tables), Event Grid, the Function App control plane,
// monitoring, and an Azure ML workspace with a scale-to-zero GPU cluster.
// Deploy with `azd up` (docs/deploy.md). Managed identities only: no keys, no secrets.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name: tags every resource and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Region for everything. Needs Flex Consumption and quota for the GPU VM family.')
@metadata({ azd: { type: 'location' } })
param location string = resourceGroup().location

@minLength(2)
@maxLength(10)
@description('Prefix of the Function App and workspace names (lowercase letters, digits, hyphens).')
param namePrefix string = 'aztrain'

@description('VM size of the default `gpu-small` cluster. Needs quota for its family in this region.')
param gpuVmSize string = 'Standard_NC6s_v3'

@minValue(1)
@maxValue(100)
@description('Most nodes the `gpu-small` cluster may scale to.')
param gpuMaxNodes int = 2

@allowed(['LowPriority', 'Dedicated'])
@description('Dedicated matches the manifest default (compute.priority: dedicated). LowPriority costs a fraction but can be preempted.')
param gpuPriority string = 'Dedicated'

@description('Create the Event Grid subscriptions. Leave false until the function code is deployed: Event Grid rejects a subscription to a function that does not exist yet.')
param deployEventSubscriptions bool = false

@description('Optional object id (azd: AZURE_PRINCIPAL_ID) granted upload rights on the jobs and data containers and read access to run logs.')
param principalId string = ''

var token = toLower(uniqueString(resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }

// Names the Python code defaults to (aztrain/settings.py, aztrain/adapters/tables.py).
// tests/unit/test_infra.py keeps the two in step.
var jobsContainer = 'jobs'
var manifestsPrefix = 'manifests/'
var runsContainer = 'runs'
var dataContainers = ['datasets']
var tables = ['jobs', 'runs', 'runhistory', 'claims', 'clusters', 'arrivals', 'models']
var deadLetterContainer = 'deadletter'
var deploymentContainer = 'app-package'
// The name the azureml backend gives the `gpu-small` profile's cluster (aztrain.profiles.CLUSTER_PREFIX).
var gpuClusterName = 'aztrain-gpu-small'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${token}'
    appInsightsName: 'appi-${token}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: 'st${token}'
    containers: concat([jobsContainer, runsContainer, deadLetterContainer, deploymentContainer], dataContainers)
    tables: tables
  }
}

module aml 'modules/aml.bicep' = {
  name: 'aml'
  params: {
    location: location
    tags: tags
    workspaceName: 'mlw-${namePrefix}-${token}'
    storageAccountName: 'stml${token}'
    keyVaultName: 'kv-${token}'
    appInsightsName: 'appi-ml-${token}'
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    trainingIdentityName: 'id-train-${token}'
    gpuClusterName: gpuClusterName
    dataStorageAccountName: storage.outputs.name
    datastoreContainers: concat([runsContainer], dataContainers)
    gpuVmSize: gpuVmSize
    gpuMaxNodes: gpuMaxNodes
    gpuPriority: gpuPriority
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-func-${token}'
    planName: 'plan-${token}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    appSettings: {
      // Read by aztrain/settings.py.
      AZTRAIN_STORAGE_ACCOUNT: storage.outputs.name // managed identity, no connection string
      AZTRAIN_BACKEND: 'azureml'
      AZTRAIN_JOBS_CONTAINER: jobsContainer
      AZTRAIN_MANIFESTS_PREFIX: manifestsPrefix // the same value the Event Grid filter uses
      AZTRAIN_RUNS_CONTAINER: runsContainer
      AZTRAIN_DATA_CONTAINERS: join(dataContainers, ',')
      // For the Azure ML backend.
      AZTRAIN_AML_SUBSCRIPTION_ID: subscription().subscriptionId
      AZTRAIN_AML_RESOURCE_GROUP: resourceGroup().name
      AZTRAIN_AML_WORKSPACE: aml.outputs.workspaceName
      AZTRAIN_AML_COMPUTE_IDENTITY_ID: aml.outputs.trainingIdentityId // attach to clusters it creates
      // The gpu-small profile as deployed here, so the backend adopts this cluster instead of resizing it.
      AZTRAIN_COMPUTE_PROFILES: string({
        'gpu-small': {
          vm_size: gpuVmSize
          max_nodes: gpuMaxNodes
          tier: gpuPriority == 'LowPriority' ? 'low_priority' : 'dedicated'
        }
      })
    }
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    location: location
    tags: tags
    name: 'evgt-${token}'
    storageAccountName: storage.outputs.name
    functionAppId: functionApp.outputs.id
    deploySubscriptions: deployEventSubscriptions
    jobsContainer: jobsContainer
    manifestsPrefix: manifestsPrefix
    dataContainers: dataContainers
    deadLetterContainer: deadLetterContainer
    workspaceName: aml.outputs.workspaceName
    workspaceTopicName: 'evgt-ml-${token}'
  }
}

// Runs after the identities exist. The dead-letter grant for Event Grid is therefore in place
// before the second provision creates the subscriptions that use it.
module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    workspaceName: aml.outputs.workspaceName
    trainingIdentityName: aml.outputs.trainingIdentityName
    functionPrincipalId: functionApp.outputs.principalId
    trainingPrincipalId: aml.outputs.trainingIdentityPrincipalId
    eventGridPrincipalId: eventGrid.outputs.principalId
    jobsContainer: jobsContainer
    runsContainer: runsContainer
    dataContainers: dataContainers
    deadLetterContainer: deadLetterContainer
    userPrincipalId: principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_ML_WORKSPACE_NAME string = aml.outputs.workspaceName
output AZURE_ML_GPU_CLUSTER string = aml.outputs.gpuClusterName
// The CLI's AZTRAIN_URL (it appends /api/...); API_BASE_URL is the same with /api.
output AZTRAIN_URL string = 'https://${functionApp.outputs.defaultHostName}'
output API_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
