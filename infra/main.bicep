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

// NCasT4_v3: one T4 per node, the small, cheap current GPU size (the NCv3 series, Standard_NC6s_v3,
// the old default, was retired on 30 September 2025). aztrain.domain.profiles uses the same size for `gpu-small`.
@description('VM size of the default `gpu-small` cluster. Needs quota for its family in this region.')
param gpuVmSize string = 'Standard_NC4as_T4_v3'

@minValue(0)
@maxValue(16)
@description('GPUs per node of `gpuVmSize` (azd: GPUS_PER_NODE). 0: a size aztrain.domain.profiles knows (GPUS_PER_NODE there); any other size must give it, as a manifest may not ask for more processes per node than this.')
param gpuCountPerNode int = 0

@minValue(1)
@maxValue(100)
@description('Most nodes the `gpu-small` cluster may scale to.')
param gpuMaxNodes int = 2

@description('Compute profiles users may run on, comma-separated (azd: ALLOWED_PROFILES). The default is the one cluster this template provisions; a manifest naming any other profile, or a priority it does not offer, is refused at submit (422 naming these). Add gpu-small-low, gpu-a100, ... only with quota and budget for them.')
param allowedProfiles string = 'gpu-small'

@allowed(['LowPriority', 'Dedicated'])
@description('Dedicated matches the manifest default (compute.priority: dedicated). LowPriority costs a fraction but can be preempted.')
param gpuPriority string = 'Dedicated'

// Flex Consumption scale limits (learn.microsoft.com/azure/azure-functions/flex-consumption-plan:
// "The lowest maximum scale ... is 40. The highest currently supported value is 1000"; instance
// memory 512, 2048 or 4096 MB, as the official Flex samples allow: Azure-Samples/azure-functions-flex-consumption-samples).
@minValue(40)
@maxValue(1000)
@description('Most Function App instances Flex Consumption may run at once; caps the control plane\'s cost. Handlers are idempotent, so any value in range is safe.')
param functionMaximumInstanceCount int = 40

// Measured: the app's Python process peaks at about 136 MB with every SDK it uses imported (azure-ai-ml,
// storage, Event Grid, OpenTelemetry; docs/deploy.md, *Instance memory*), so 512 MB, the smallest size, is
// the default: execution is billed per GB-s, a quarter of 2048's.
@allowed([512, 2048, 4096])
@description('Memory per Function App instance (MB). 512 holds the app (it peaks near 136 MB); 2048 or 4096 for headroom.')
param functionInstanceMemoryMB int = 512

// Replication of both storage accounts: the control plane's (run records, manifests, the model
// registry, datasets) and the workspace's (job snapshots, logs, registered model files).
// GRS keeps a copy in the paired region. Standard_LRS costs about half for large datasets; an
// account can move between LRS and GRS later, but not to or from zone-redundant SKUs in place.
@allowed(['Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS', 'Standard_RAGZRS', 'Standard_LRS', 'Standard_ZRS'])
@description('Replication of the storage accounts (azd: STORAGE_SKU).')
param storageSkuName string = 'Standard_GRS'

@description('Optional object id (azd: AZURE_PRINCIPAL_ID) granted upload rights on the jobs and data containers and read access to run logs.')
param principalId string = ''

@minValue(1)
@description('Days previous blob versions (overwritten or deleted manifests, logs, outputs, checkpoints) are kept before deletion.')
param previousVersionRetentionDays int = 30

var token = toLower(uniqueString(resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }

// Names the Python code defaults to (aztrain/service/settings.py, aztrain/adapters/storage/tables.py).
// tests/unit/test_infra.py keeps the two in step.
var jobsContainer = 'jobs'
var manifestsPrefix = 'manifests/'
var runsContainer = 'runs'
var dataContainers = ['datasets']
var tables = ['jobs', 'runs', 'runhistory', 'claims', 'clusters', 'arrivals', 'models', 'deadletters', 'active', 'watches', 'runsbytime', 'costs', 'teams', 'runaliases']
// The queue the BlobCreated subscriptions write to, and the one its trigger moves poison messages to
// (functions/blob_queue.py BLOB_EVENTS_QUEUE, POISON_QUEUE).
var blobEventsQueue = 'blob-events'
var poisonQueue = '${blobEventsQueue}-poison'
var deadLetterContainer = 'deadletter'
// The trainer's Azure ML environment (aztrain.service.settings's default name), registered from
// trainer/environment by the postprovision hook; the app's jobs use its latest version.
var trainerEnvironment = 'aztrain-trainer'
var deploymentContainer = 'app-package'
// The name the azureml backend gives the `gpu-small` profile's cluster (aztrain.domain.profiles.CLUSTER_PREFIX).
var gpuClusterName = 'aztrain-gpu-small'
// The `gpu-small` profile as deployed here (AZTRAIN_COMPUTE_PROFILES, aztrain/domain/profiles.py). A size
// aztrain knows needs no gpus_per_node; any other size must give it (gpuCountPerNode).
var gpuSmallProfile = {
  vm_size: gpuVmSize
  max_nodes: gpuMaxNodes
  tier: gpuPriority == 'LowPriority' ? 'low_priority' : 'dedicated'
}
var gpuSmallGpus = gpuCountPerNode > 0 ? { gpus_per_node: gpuCountPerNode } : {}

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
    skuName: storageSkuName
    previousVersionRetentionDays: previousVersionRetentionDays
    containers: concat([jobsContainer, runsContainer, deadLetterContainer, deploymentContainer], dataContainers)
    tables: tables
    queues: [blobEventsQueue, poisonQueue]
  }
}

module aml 'modules/aml.bicep' = {
  name: 'aml'
  params: {
    location: location
    tags: tags
    workspaceName: 'mlw-${namePrefix}-${token}'
    storageAccountName: 'stml${token}'
    storageSkuName: storageSkuName
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

// Outbound run events (docs/events.md): the app publishes to it with its identity.
module topic 'modules/topic.bicep' = {
  name: 'topic'
  params: {
    location: location
    tags: tags
    name: 'evgt-events-${token}'
  }
}

var functionAppName = '${namePrefix}-func-${token}'

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: 'plan-${token}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    appSettings: {
      // Read by aztrain/service/settings.py.
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
      // CloudEvents: `source` + `id` identify an event, so each deployment names itself, with its
      // resource path as Azure's own events do (docs/events.md, *Envelope*).
      AZTRAIN_EVENTS_SOURCE: resourceId('Microsoft.Web/sites', functionAppName)
      AZTRAIN_AML_ENVIRONMENT: '${trainerEnvironment}@latest'
      AZTRAIN_AML_COMPUTE_IDENTITY_ID: aml.outputs.trainingIdentityId // attach to clusters it creates
      // The gpu-small profile as deployed here, so the backend adopts this cluster instead of resizing it.
      AZTRAIN_COMPUTE_PROFILES: string({ 'gpu-small': union(gpuSmallProfile, gpuSmallGpus) })
      AZTRAIN_ALLOWED_PROFILES: allowedProfiles
      // Outbound events: no key, so the managed identity (EventGrid Data Sender, rbac.bicep) signs them.
      AZTRAIN_EVENTS_TOPIC_ENDPOINT: topic.outputs.endpoint
    }
  }
}

// The system topics only. Their subscriptions to the functions are infra/events.bicep, deployed by
// the azd postdeploy hook (azure.yaml, infra/hooks/postdeploy.*): Event Grid checks that a
// destination function exists when a subscription is created, and the functions exist only once
// `azd deploy` has published the code. Its parameters are the AZTRAIN_EVENTS_PARAMETERS output below.
module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    location: location
    tags: tags
    name: 'evgt-${token}'
    storageAccountName: storage.outputs.name
    workspaceName: aml.outputs.workspaceName
    workspaceTopicName: 'evgt-ml-${token}'
  }
}

// Runs after the identities exist, so the dead-letter grant for Event Grid is in place before the
// postdeploy hook creates the subscriptions that use it.
module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    eventsTopicName: topic.outputs.name
    workspaceName: aml.outputs.workspaceName
    trainingIdentityName: aml.outputs.trainingIdentityName
    functionPrincipalId: functionApp.outputs.principalId
    trainingPrincipalId: aml.outputs.trainingIdentityPrincipalId
    workspacePrincipalId: aml.outputs.workspacePrincipalId
    eventGridPrincipalId: eventGrid.outputs.principalId
    jobsContainer: jobsContainer
    runsContainer: runsContainer
    dataContainers: dataContainers
    deadLetterContainer: deadLetterContainer
    blobEventsQueue: blobEventsQueue
    poisonQueue: poisonQueue
    userPrincipalId: principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_ML_WORKSPACE_NAME string = aml.outputs.workspaceName
output AZURE_ML_GPU_CLUSTER string = aml.outputs.gpuClusterName
output AZURE_ML_ENVIRONMENT_NAME string = trainerEnvironment
// The CLI's AZTRAIN_URL (it appends /api/...); API_BASE_URL is the same with /api.
output AZTRAIN_URL string = 'https://${functionApp.outputs.defaultHostName}'
output API_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
// A deployment parameters file (contentVersion + parameters; no $schema, which the azd .env file
// would try to expand) for infra/events.bicep, which the postdeploy hook deploys with
// `az deployment group create --parameters @<file>`. One output keeps the hook free of names.
output AZTRAIN_EVENTS_PARAMETERS string = string({
  contentVersion: '1.0.0.0'
  parameters: {
    functionAppName: { value: functionApp.outputs.name }
    storageTopicName: { value: eventGrid.outputs.name }
    workspaceTopicName: { value: eventGrid.outputs.workspaceTopicName }
    storageAccountName: { value: storage.outputs.name }
    jobsContainer: { value: jobsContainer }
    manifestsPrefix: { value: manifestsPrefix }
    dataContainers: { value: dataContainers }
    deadLetterContainer: { value: deadLetterContainer }
    blobEventsQueue: { value: blobEventsQueue }
  }
})
