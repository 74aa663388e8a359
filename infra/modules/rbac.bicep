// Every role assignment in one place, each at the narrowest scope that works.

param storageAccountName string
param appInsightsName string
param workspaceName string
param trainingIdentityName string

@description('The Function App\'s system-assigned identity: the control plane.')
param functionPrincipalId string

@description('The user-assigned identity training jobs run as.')
param trainingPrincipalId string

@description('The Event Grid system topic\'s identity, which writes dead letters.')
param eventGridPrincipalId string

param jobsContainer string
param runsContainer string
param dataContainers array
param deadLetterContainer string

@description('Optional: a user (object id) allowed to upload manifests and data and read run logs.')
param userPrincipalId string = ''

// Built-in role definition ids (docs/deploy.md lists them with the reason for each).
var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  azureMLComputeOperator: 'e503ece1-11d0-4e8e-8e2c-7a6c3bf38815'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
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

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource trainingIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: trainingIdentityName
}

// ---------------------------------------------------------------- the control plane (Function App)

// Manifests, data, run logs/outputs, plus the host's own containers (azure-webjobs-*: timer
// locks, keys) and the Flex deployment package. Account scope because the host creates its
// containers itself.
resource functionBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// jobs, runs, runhistory, claims, clusters, ... (TableRunStore creates and writes them).
resource functionTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host keeps queue-backed state for some triggers (blob-trigger receipts and poison
// queues); none of today's triggers needs it, so this is the one grant to drop to tighten further.
resource functionQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

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

// ---------------------------------------------------------------- Event Grid

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

// `az storage blob upload --auth-mode login` of manifests and data. principalType is left out:
// the deployer may be a user or, in CI, a service principal.
resource userUploadsManifests 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(jobs.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: jobs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: userPrincipalId
  }
}

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

resource userReadsRuns 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(runs.id, userPrincipalId, roles.storageBlobDataReader)
  scope: runs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: userPrincipalId
  }
}
