// Azure Machine Learning: the workspace the `azureml` backend submits Horovod jobs to, its
// required dependencies, and the default GPU cluster (`gpu-small` profile). The control plane
// creates clusters for other profiles on demand, with the same training identity.
//
// The workspace gets its own storage account: Azure ML manages it (and its default
// datastores use keys), while the control plane's account stays key-less.
// No container registry: Azure ML creates one on first custom-environment build.

param location string
param tags object
param workspaceName string
param storageAccountName string
param keyVaultName string
param appInsightsName string
param logAnalyticsId string
param trainingIdentityName string

@description('Name of the default compute cluster; the `gpu-small` manifest profile.')
param gpuClusterName string

@description('The control plane\'s storage account, whose containers jobs mount as datastores.')
param dataStorageAccountName string

@description('Containers registered as credential-less datastores `aztrain_<container>` (data in, outputs out).')
param datastoreContainers array

param gpuVmSize string
param gpuMaxNodes int

@allowed(['LowPriority', 'Dedicated'])
param gpuPriority string

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true // no access policies; Azure ML grants its workspace identity
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource mlAppInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalyticsId
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {
  name: workspaceName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: workspaceName
    description: 'aztrain: Horovod GPU training submitted by the control plane'
    storageAccount: mlStorage.id
    keyVault: keyVault.id
    applicationInsights: mlAppInsights.id
    publicNetworkAccess: 'Enabled'
    hbiWorkspace: false
  }
}

// The identity training jobs run as: reads datasets and writes run logs/outputs in the control
// plane's storage account (roles in rbac.bicep). One identity for every cluster, so clusters the
// control plane creates on demand get the same, already granted, access.
resource trainingIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: trainingIdentityName
  location: location
  tags: tags
}

resource gpuCluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-04-01' = {
  parent: workspace
  name: gpuClusterName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${trainingIdentity.id}': {}
    }
  }
  properties: {
    computeType: 'AmlCompute'
    computeLocation: location
    description: 'Default GPU cluster (gpu-small profile); scales to zero'
    disableLocalAuth: true
    properties: {
      vmSize: gpuVmSize
      vmPriority: gpuPriority // LowPriority: much cheaper, but nodes can be preempted
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled' // no SSH into nodes
      scaleSettings: {
        minNodeCount: 0 // nothing is billed while no run needs a node
        maxNodeCount: gpuMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT120S'
      }
    }
  }
}

// Credential-less: jobs reach the blobs with the training identity, never with a key.
// Names follow aztrain.adapters.azureml.datastore_for (Azure ML names allow no '-').
resource datastores 'Microsoft.MachineLearningServices/workspaces/datastores@2024-04-01' = [
  for container in datastoreContainers: {
    parent: workspace
    name: 'aztrain_${replace(container, '-', '_')}'
    properties: {
      datastoreType: 'AzureBlob'
      accountName: dataStorageAccountName
      containerName: container
      endpoint: environment().suffixes.storage
      protocol: 'https'
      credentials: { credentialsType: 'None' }
      serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity'
    }
  }
]

output workspaceName string = workspace.name
output workspaceId string = workspace.id
output gpuClusterName string = gpuCluster.name
output trainingIdentityId string = trainingIdentity.id
output trainingIdentityName string = trainingIdentity.name
output trainingIdentityPrincipalId string = trainingIdentity.properties.principalId
output trainingIdentityClientId string = trainingIdentity.properties.clientId
