// Every role assignment in one place, each at the narrowest scope that works.

param storageAccountName string
param appInsightsName string
param eventsTopicName string
param workspaceName string
param trainingIdentityName string

@description('The Function App\'s system-assigned identity: the control plane.')
param functionPrincipalId string

@description('The user-assigned identity training jobs run as.')
param trainingPrincipalId string

@description('The Event Grid system topic\'s identity, which writes blob events to their queue and dead letters.')
param eventGridPrincipalId string

@description('The Azure ML workspace\'s system-assigned identity: studio reads the datastores with it.')
param workspacePrincipalId string

param jobsContainer string
param runsContainer string
param dataContainers array
param deadLetterContainer string

@description('The queue Event Grid writes blob events to, which the Function App\'s queue trigger reads.')
param blobEventsQueue string

@description('Where the Functions host moves a blob event that failed every attempt (its `<queue>-poison`).')
param poisonQueue string

@description('Optional: a user (object id) allowed to upload manifests and data and read run logs.')
param userPrincipalId string = ''

// Built-in role definition ids (docs/deploy.md lists them with the reason for each).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  azureMLComputeOperator: 'e503ece1-11d0-4e8e-8e2c-7a6c3bf38815'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource jobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: jobsContainer
}

resource runs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: runsContainer
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainer
}

resource dataContainerRefs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in dataContainers: {
    parent: blobService
    name: container
  }
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: eventsTopicName
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource trainingIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: trainingIdentityName
}

// ---------------------------------------------------------------- the control plane (Function App)

// The Functions host's own storage (AzureWebJobsStorage__accountName is this account) plus the app's
// blobs. Storage Blob Data Owner is what Azure documents for identity-based host storage: "The
// Storage Blob Data Owner role covers the basic needs of Functions host storage - the runtime needs
// both read and write access to blobs and the ability to create containers" (timer-trigger locks,
// the key store); see learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
// (includes/functions-azurewebjobsstorage-permissions.md in MicrosoftDocs/azure-docs). The Flex
// Consumption quickstarts grant the same for the deployment package container
// (Azure-Samples/functions-quickstart-python-azd-eventgrid-blob, infra/app/rbac.bicep). It also
// covers the app's own blobs: manifests and data read, run snapshots and records written.
// Account scope because the host creates its containers (azure-webjobs-hosts, -secrets) itself.
resource functionBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The app's tables (jobs, runs, runhistory, claims, clusters, arrivals, models: TableRunStore writes
// them), and the host's diagnostic events, which the same doc says are persisted in table storage
// through AzureWebJobsStorage ("Storage Blob Data Owner, Storage Table Data Contributor").
resource functionTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The host itself needs no queue role (per the same table only blob triggers and Durable Functions make
// it use queues); the app's own queue triggers get theirs on the two queues they read (below).

// Telemetry with Entra ID (Application Insights has local auth disabled).
resource functionTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Publish outbound run events to the custom topic (it has local auth disabled: no key exists).
resource functionEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, functionPrincipalId, roles.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Submit, watch and cancel jobs; cannot change the workspace or its computes.
resource functionDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Create clusters per compute profile and resize them (scale to zero); nothing else.
resource functionComputeOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roles.azureMLComputeOperator)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLComputeOperator)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Attach the training identity to the clusters it creates (assign/action on that identity only).
resource functionAssignsTrainingIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(trainingIdentity.id, functionPrincipalId, roles.managedIdentityOperator)
  scope: trainingIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.managedIdentityOperator)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- training jobs

// Read training data: the data containers only.
resource trainingReadsData 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in dataContainers: {
    name: guid(dataContainerRefs[i].id, trainingPrincipalId, roles.storageBlobDataReader)
    scope: dataContainerRefs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: trainingPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Stream logs and upload outputs: the runs container only.
resource trainingWritesRuns 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(runs.id, trainingPrincipalId, roles.storageBlobDataContributor)
  scope: runs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: trainingPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- the Azure ML workspace

// Studio's data preview and the dataset browser read the datastores (aml.bicep registers runs and the
// data containers, credential-less, with serviceDataAccessAuthIdentity: WorkspaceSystemAssignedIdentity)
// as the workspace's own identity, which otherwise has no role on this account. Read-only, and only
// on those containers (learn.microsoft.com/azure/machine-learning/how-to-datastore: identity-based
// data access; the workspace identity needs Storage Blob Data Reader for studio to show the data).
var datastoreContainers = concat([runsContainer], dataContainers)

resource datastoreContainerRefs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in datastoreContainers: {
    parent: blobService
    name: container
  }
]

// Storage Blob Data Reader for the workspace identity on each datastore container (why: above).
resource workspaceReadsDatastores 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in datastoreContainers: {
    name: guid(datastoreContainerRefs[i].id, workspacePrincipalId, roles.storageBlobDataReader)
    scope: datastoreContainerRefs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: workspacePrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// ---------------------------------------------------------------- the blob-events queues

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource blobEvents 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: blobEventsQueue
}

resource poisonEvents 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: poisonQueue
}

// The queue trigger reads, updates and deletes messages of the blob-events queue, and writes the ones
// that failed every attempt to the poison queue, whose own trigger reads them: Storage Queue Data
// Contributor on those two queues only ("Azure Queue storage trigger": identity-based connections
// need it, learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger).
resource functionQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for queue in [blobEvents, poisonEvents]: {
    name: guid(queue.id, functionPrincipalId, roles.storageQueueDataContributor)
    scope: queue
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// ---------------------------------------------------------------- Event Grid

// Deliver blob events with the system topic's identity (deliveryWithResourceIdentity): it may add
// messages to the blob-events queue, and nothing else there ("Storage queue as an event handler",
// learn.microsoft.com/azure/event-grid/handler-storage-queues).
resource eventGridSendsBlobEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(blobEvents.id, eventGridPrincipalId, roles.storageQueueDataMessageSender)
  scope: blobEvents
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Dead-letter undeliverable events: the dead-letter container only.
resource eventGridDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, eventGridPrincipalId, roles.storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- optional: the operator

// Upload manifests (`az storage blob upload --auth-mode login`): the jobs container. principalType is
// left out of these grants: the deployer may be a user or, in CI, a service principal.
resource userUploadsManifests 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(jobs.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: jobs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: userPrincipalId
  }
}

// Upload data (`az storage blob upload-batch --auth-mode login`): each data container.
resource userUploadsData 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in dataContainers: if (!empty(userPrincipalId)) {
    name: guid(dataContainerRefs[i].id, userPrincipalId, roles.storageBlobDataContributor)
    scope: dataContainerRefs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
      principalId: userPrincipalId
    }
  }
]

// Read run logs and outputs (`az storage blob download --auth-mode login`): the runs container, read-only.
resource userReadsRuns 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(runs.id, userPrincipalId, roles.storageBlobDataReader)
  scope: runs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: userPrincipalId
  }
}
