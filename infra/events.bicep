// Event Grid subscriptions: blob events -> the `blob-events` storage queue, read by the queue trigger
// `on_blob_event` (functions/blob_queue.py); Azure ML job events -> `on_run_status_changed`
// (functions/events.py).
//
// Not part of `azd provision`: Event Grid checks that an AzureFunction destination exists when a
// subscription is created, and the functions exist only after `azd deploy` has published the code.
// The azd postdeploy hook (azure.yaml -> infra/hooks/postdeploy.sh | postdeploy.ps1) deploys this
// file with `az deployment group create`, taking its parameters from main.bicep's
// AZTRAIN_EVENTS_PARAMETERS output, so `azd up` ends with events flowing. The same pattern (a
// postdeploy hook creating the subscription) is Azure's Flex Consumption Event Grid quickstart,
// github.com/Azure-Samples/functions-quickstart-python-azd-eventgrid-blob (azure.yaml, scripts/post-up.*).
// Redeploying is idempotent: subscriptions are updated in place.
//
// The filters mirror devhost.localstack.subscriptions(), which the dev host delivers by
// (tests/unit/test_infra.py keeps the two in step).
targetScope = 'resourceGroup'

@description('The Function App whose functions receive the events.')
param functionAppName string

@description('The system topic on the control plane\'s storage account (modules/eventgrid.bicep).')
param storageTopicName string

@description('The system topic on the Azure ML workspace (modules/eventgrid.bicep).')
param workspaceTopicName string

@description('The control plane\'s storage account, home of the dead-letter container.')
param storageAccountName string

@description('Container whose `manifestsPrefix` blobs are job manifests (AZTRAIN_JOBS_CONTAINER).')
param jobsContainer string

@description('Blob name prefix of manifests inside the jobs container (AZTRAIN_MANIFESTS_PREFIX).')
param manifestsPrefix string

@description('Containers whose new blobs count as data arrival (AZTRAIN_DATA_CONTAINERS).')
param dataContainers array

@description('Container receiving events that could not be delivered.')
param deadLetterContainer string

@description('The storage queue the blob subscriptions write to (functions/blob_queue.py BLOB_EVENTS_QUEUE).')
param blobEventsQueue string = 'blob-events'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: storageTopicName
}

resource workspaceTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: workspaceTopicName
}

var blobsOf = '/blobServices/default/containers/'
var manifestSuffixes = ['.yaml', '.yml', '.json']

// What both blob subscriptions share: every event becomes one message of the blob-events queue,
// written with the system topic's identity (Storage Queue Data Message Sender, rbac.bicep), and the
// queue trigger takes them in batches, many at once (host.json `extensions.queues`). A storm waits in
// the queue, however long the function is down: the message time-to-live is infinite (-1), so no
// event is dropped by the queue. Sources: "Storage queue as an event handler for Azure Event Grid
// events" (learn.microsoft.com/azure/event-grid/handler-storage-queues) and the REST property
// StorageQueueEventSubscriptionDestinationProperties.queueMessageTimeToLiveInSeconds ("-1 to indicate
// that the Time To Live of the message is Infinite"); Event Grid writes the messages base64-encoded,
// as the queue trigger expects (MicrosoftDocs/azure-docs#102923).
var queueDelivery = {
  identity: { type: 'SystemAssigned' }
  destination: {
    endpointType: 'StorageQueue'
    properties: {
      resourceId: storage.id
      queueName: blobEventsQueue
      queueMessageTimeToLiveInSeconds: -1
    }
  }
}
// Event Grid's own retries (a queue write that fails: storage throttling or an outage), then the
// dead-letter container: an event is never lost silently.
var retryPolicy = {
  maxDeliveryAttempts: 30
  eventTimeToLiveInMinutes: 1440
}
// Dead letters are written with the topic's identity (granted on this container in rbac.bicep).
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

resource manifests 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'manifests'
  properties: {
    deliveryWithResourceIdentity: queueDelivery
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
  for container in dataContainers: {
    parent: topic
    name: 'data-${container}'
    properties: {
      deliveryWithResourceIdentity: queueDelivery
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

// Azure ML job status -> `on_run_status_changed`: what moves runs, at once. The reconciler's slow
// backstop polls a job not heard from at most once a minute, so a lost event costs a minute, not a
// run. Only aztrain's jobs.
resource runStatus 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: workspaceTopic
  name: 'run-status'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_run_status_changed'
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
          values: ['aztrain-'] // aztrain.domain.layout.BACKEND_JOB_PREFIX
        }
      ]
    }
    retryPolicy: retryPolicy
  }
}

var dataSubscriptions = [for container in dataContainers: 'data-${container}']

output subscriptions array = concat([manifests.name], dataSubscriptions, [runStatus.name])
