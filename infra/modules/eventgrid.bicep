// The Event Grid system topics: blob events of the control plane's storage account, and the Azure ML
// workspace's job events. Their subscriptions to the functions are in infra/events.bicep, which the
// azd postdeploy hook deploys once the functions exist (Event Grid checks that a destination function
// exists when a subscription is created; see docs/deploy.md).

param location string
param tags object
param name string
param storageAccountName string

@description('The Azure ML workspace whose RunStatusChanged events reach `on_run_status_changed`.')
param workspaceName string

@description('Name of the workspace\'s system topic.')
param workspaceTopicName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location // a storage system topic lives in the account's region
  tags: tags
  identity: {
    type: 'SystemAssigned' // writes dead letters with Entra ID (the account has no keys)
  }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource workspaceTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: workspaceTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
output workspaceTopicName string = workspaceTopic.name
