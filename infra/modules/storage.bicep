// The control plane's storage account: manifests, data, run logs/outputs (blobs) and its
// state (tables). Also the Functions host's own storage and the Flex deployment package.
// Keys are disabled: every caller (the app, the Functions host, Event Grid dead-lettering,
// training jobs, you with `--auth-mode login`) authenticates with Entra ID.

param location string
param tags object
param name string

@description('Blob containers to create (jobs, runs, data containers, dead letters, deployment package).')
param containers array

@description('Tables to create; must equal aztrain.adapters.storage.tables.TABLES.')
param tables array

@description('Queues to create: the blob-events queue Event Grid writes to, and its poison queue.')
param queues array

@minValue(1)
@description('Days a previous blob version (an overwritten or deleted manifest, log, output or checkpoint) is kept before lifecycle management deletes it.')
param previousVersionRetentionDays int = 30

@description('Replication. main.bicep always passes its storageSkuName; the default (the same) lets checkov see the value.')
param skuName string = 'Standard_GRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // managed identity only; AzureWebJobsStorage__accountName uses it too
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
  // checkov:skip=CKV_AZURE_35: Reached over its public endpoint by the Function App (Flex without VNet integration is not a trusted service), by Azure ML clusters mounting the datastores, and by users uploading data; shared keys are off, so every request needs an Entra ID role (rbac.bicep) over TLS 1.2. A Deny rule needs the VNet and private endpoints this template does not deploy (docs/deploy.md, Known limits).
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // Every overwritten manifest stays recoverable as a previous version.
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Versioning keeps every overwritten or deleted blob as a billed previous version (on GRS, twice);
// Azure's versioning overview advises a lifecycle rule to delete them. Checkpoints count: the trainer
// keeps its newest two and deletes the rest, and each deleted one is a previous version until this rule
// runs. Rule shape: learn.microsoft.com/azure/storage/blobs/lifecycle-management-policy-delete
// ("version" actions, daysAfterCreationGreaterThan counts from when the version became previous).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-previous-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob', 'appendBlob'] }
            actions: {
              version: { delete: { daysAfterCreationGreaterThan: previousVersionRetentionDays } }
            }
          }
        }
      ]
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tableResources 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: table
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queueResources 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueService
    name: queue
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
