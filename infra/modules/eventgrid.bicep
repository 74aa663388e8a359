// Blob events -> the `on_blob_created` function (functions/events.py).
// The system topic always exists; its subscriptions only when deploySubscriptions is true,
// because Event Grid checks that the destination function exists when a subscription is
// created, and the function exists only after `azd deploy` (see docs/deploy.md).
// The filters mirror aztrain.localstack.subscriptions(), which the dev host uses.

param location string
param tags object
param name string
param storageAccountName string
param functionAppId string
param deploySubscriptions bool

@description('Container whose `manifestsPrefix` blobs are job manifests (AZTRAIN_JOBS_CONTAINER).')
param jobsContainer string

@description('Blob name prefix of manifests inside the jobs container (AZTRAIN_MANIFESTS_PREFIX).')
param manifestsPrefix string

@description('Containers whose new blobs count as data arrival (AZTRAIN_DATA_CONTAINERS).')
param dataContainers array

@description('Container receiving events that could not be delivered.')
param deadLetterContainer string

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

var blobsOf = '/blobServices/default/containers/'
var manifestSuffixes = ['.yaml', '.yml', '.json']

// What both subscriptions share. One event per call: the handler records the blob, takes one
// cheap step and returns; a failure raises, so Event Grid retries just that event.
var destination = {
  endpointType: 'AzureFunction'
  properties: {
    resourceId: '${functionAppId}/functions/on_blob_created'
    maxEventsPerBatch: 1
    preferredBatchSizeInKilobytes: 64
  }
}
var retryPolicy = {
  maxDeliveryAttempts: 30
  eventTimeToLiveInMinutes: 1440
}
var deadLetter = {
  identity: { type: 'SystemAssigned' }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: storage.id
      blobContainerName: deadLetterContainer
    }
  }
}

resource manifests 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deploySubscriptions) {
  parent: topic
  name: 'manifests'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '${blobsOf}${jobsContainer}/blobs/${manifestsPrefix}'
      // subjectEndsWith takes one value; an advanced filter ORs several.
      advancedFilters: [
        {
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: manifestSuffixes
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource data 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for container in dataContainers: if (deploySubscriptions) {
    parent: topic
    name: 'data-${container}'
    properties: {
      destination: destination
      eventDeliverySchema: 'EventGridSchema'
      filter: {
        includedEventTypes: ['Microsoft.Storage.BlobCreated']
        subjectBeginsWith: '${blobsOf}${container}/blobs/'
      }
      retryPolicy: retryPolicy
      deadLetterWithResourceIdentity: deadLetter
    }
  }
]

// Azure ML job status -> `on_run_status_changed`: a hint that makes runs move at once. The
// reconciler polls anyway, so a lost event costs a minute, not a run. Only aztrain's jobs.
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

resource runStatus 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deploySubscriptions) {
  parent: workspaceTopic
  name: 'run-status'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_run_status_changed'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged']
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'data.runId'
          values: ['aztrain-'] // aztrain.service.BACKEND_JOB_PREFIX
        }
      ]
    }
    retryPolicy: retryPolicy
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
