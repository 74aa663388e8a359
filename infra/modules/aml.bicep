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

@description('Replication of the workspace storage account. main.bicep always passes its storageSkuName; the default (the same) lets checkov see the value.')
param storageSkuName string = 'Standard_GRS'

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
  sku: { name: storageSkuName }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
  // checkov:skip=CKV_AZURE_35: The workspace's default storage: Azure ML studio, the CLI uploading job code and the clusters reach it over its public endpoint. Restricting it needs a VNet, private endpoints and a network-isolated workspace, which this template does not deploy (docs/deploy.md, Known limits).
  // checkov:skip=CKV_AZURE_43: The name is 'stml' + uniqueString(...), 17 lowercase letters and digits; checkov does not resolve module parameters and checks the parameter's name, storageAccountName, instead.
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
    // Recoverable: a deleted vault (and the workspace secrets in it) stays restorable for 7 days (the
    // shortest retention), and purge protection stops anyone from purging it sooner. The price:
    // after `azd down` the name kv-<token> stays taken for those 7 days, so redeploying the same
    // environment name into the same resource group waits or uses a new environment (docs/deploy.md).
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true // irreversible by design: the API accepts no `false` once set
  }
  // checkov:skip=CKV_AZURE_109: Azure ML itself reads this vault (workspace secrets such as its storage and registry credentials) from its own service network; a firewall with default Deny needs the network-isolated workspace setup (VNet, private endpoints) this template does not deploy. Access is RBAC only, and no person or app is granted a role on it.
  // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109: disabling public network access needs a private endpoint for Azure ML to reach the vault.
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

// The workspace keeps its system-assigned identity (its storage, key vault, studio's datastore reads)
// and carries the training identity too: serverless jobs run as a user-assigned identity of the
// workspace (learn.microsoft.com/azure/machine-learning/how-to-use-serverless-compute), and that
// identity already holds the trainer's roles (rbac.bicep), as on the clusters it is attached to.
resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {
  name: workspaceName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  identity: {
    type: 'SystemAssigned,UserAssigned'
    userAssignedIdentities: {
      '${trainingIdentity.id}': {}
    }
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
  // checkov:skip=CKV_AZURE_243: The control plane (Function App without VNet integration) and users' CLI and studio reach the workspace over its public endpoint, with Entra ID and Azure RBAC (rbac.bicep). A private endpoint needs a VNet, private DNS and VNet-integrated callers, which this template does not deploy (docs/deploy.md, Known limits).
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
// Names follow aztrain.adapters.compute.azureml.datastore_for (Azure ML names allow no '-').
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
// Studio reads datastores with this identity (serviceDataAccessAuthIdentity below); rbac.bicep grants it.
output workspacePrincipalId string = workspace.identity.principalId
output gpuClusterName string = gpuCluster.name
output trainingIdentityId string = trainingIdentity.id
output trainingIdentityName string = trainingIdentity.name
output trainingIdentityPrincipalId string = trainingIdentity.properties.principalId
output trainingIdentityClientId string = trainingIdentity.properties.clientId
